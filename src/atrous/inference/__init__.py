"""Inference: predictors, visualisation, loading trained models."""

from .loading import load_trained_model
from .predictor import Predictor
from .visualize import colorize, default_palette, overlay, save_label_png, save_rgb_png

__all__ = [
    "Predictor",
    "colorize",
    "default_palette",
    "load_trained_model",
    "overlay",
    "save_label_png",
    "save_rgb_png",
]
