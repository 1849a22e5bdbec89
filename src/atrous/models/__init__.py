"""Model families; importing this package registers every model."""

from . import deeplab, deeplab_v1, deeplab_v2, fcn, fcn_vgg, pspnet, unet  # noqa: F401  (registration side effects)
from ._registry import create_model, is_model, list_models, model_entrypoint, register_model
from .segmentor import SegmentationModel
from .weights import load_checkpoint, load_model, save_pretrained

__all__ = [
    "SegmentationModel",
    "create_model",
    "is_model",
    "list_models",
    "load_checkpoint",
    "load_model",
    "model_entrypoint",
    "register_model",
    "save_pretrained",
]
