"""Model families; importing this package registers every model."""

from . import deeplab, deeplab_v1, deeplab_v2, fcn, fcn_vgg, mask_rcnn, pspnet, unet  # noqa: F401  (registration)
from ._registry import create_model, is_model, list_models, model_entrypoint, model_task, register_model
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
    "model_task",
    "register_model",
    "save_pretrained",
]
