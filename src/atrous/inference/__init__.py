"""Inference: predictors, visualisation, loading trained models."""

from .fast import InferencePath, inference_path
from .instances import InstancePrediction, InstancePredictor
from .loading import load_inference_model, load_trained_model
from .portrait import portrait
from .predictor import Prediction, Predictor
from .torchvision_models import load_torchvision_model
from .visualize import colorize, default_palette, overlay, save_label_png, save_rgb_png

__all__ = [
    "InferencePath",
    "InstancePrediction",
    "InstancePredictor",
    "Prediction",
    "Predictor",
    "colorize",
    "default_palette",
    "inference_path",
    "load_inference_model",
    "load_torchvision_model",
    "load_trained_model",
    "overlay",
    "portrait",
    "save_label_png",
    "save_rgb_png",
]
