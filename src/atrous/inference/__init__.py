"""Inference: predictors, visualisation, loading trained models."""

from .crf import PRESETS as CRF_PRESETS
from .crf import CRFParams, DenseCRF, dense_crf, refine_with_crf
from .fast import InferencePath, inference_path
from .instances import InstancePrediction, InstancePredictor
from .loading import load_inference_model, load_trained_model
from .portrait import portrait
from .predictor import Prediction, Predictor
from .torchvision_models import load_torchvision_model
from .visualize import colorize, default_palette, overlay, save_label_png, save_rgb_png

__all__ = [
    "CRF_PRESETS",
    "CRFParams",
    "DenseCRF",
    "InferencePath",
    "InstancePrediction",
    "InstancePredictor",
    "Prediction",
    "Predictor",
    "colorize",
    "default_palette",
    "dense_crf",
    "inference_path",
    "load_inference_model",
    "load_torchvision_model",
    "load_trained_model",
    "overlay",
    "portrait",
    "refine_with_crf",
    "save_label_png",
    "save_rgb_png",
]
