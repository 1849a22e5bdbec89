"""Model families; importing this package registers every model.

Layout: :mod:`._registry` (the name → builder table, each with its task; a leaf),
:mod:`._factory` (create, load, rebuild), :mod:`.pretrained` (the recorded config and the
save/load mixin), :mod:`.segmentor` (the shared model and :func:`.segmentor.build_segmentor`),
:mod:`.heads` (heads several families share), and one file per family.
"""

from . import deeplab, deeplab_v1, deeplab_v2, fcn, fcn_vgg, mask_rcnn, pspnet, unet  # noqa: F401  (registration)
from ._factory import create_model, load_checkpoint, load_model, model_from_config, rebuild_model
from ._registry import is_model, list_models, model_entrypoint, model_task, register_model, task_of
from .pretrained import save_pretrained
from .segmentor import SegmentationModel

__all__ = [
    "SegmentationModel",
    "create_model",
    "is_model",
    "list_models",
    "load_checkpoint",
    "load_model",
    "model_entrypoint",
    "model_from_config",
    "model_task",
    "rebuild_model",
    "register_model",
    "save_pretrained",
    "task_of",
]
