"""The model registry: ``@register_model`` functions, built through :func:`create_model`."""

from __future__ import annotations

import difflib
import fnmatch
import functools
from collections.abc import Callable
from typing import TYPE_CHECKING

from ..options import check_options

if TYPE_CHECKING:
    from .segmentor import SegmentationModel

_model_entrypoints: dict[str, Callable[..., SegmentationModel]] = {}
_model_tasks: dict[str, str] = {}
TASKS = ("semantic", "instance")


def register_model(fn: Callable[..., SegmentationModel] | None = None, *, task: str = "semantic"):
    """Register a model-building function under its own name: ``@register_model`` for a
    semantic segmentation model, ``@register_model(task="instance")`` for an instance one."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")

    def register(fn: Callable[..., SegmentationModel]) -> Callable[..., SegmentationModel]:
        name = fn.__name__
        if name in _model_entrypoints:
            raise ValueError(f"model {name!r} is registered twice")

        @functools.wraps(fn)
        def build(**kwargs) -> SegmentationModel:
            model = fn(**kwargs)
            model.config["name"] = name  # what load_model rebuilds from
            return model

        _model_entrypoints[name] = build
        _model_tasks[name] = task
        return build

    return register if fn is None else register(fn)


def list_models(pattern: str = "*", *, task: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a glob (``"deeplab*"``) and
    by task (``"semantic"`` or ``"instance"``)."""
    if task is not None and task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    return sorted(
        n for n in _model_entrypoints if fnmatch.fnmatch(n, pattern) and (task is None or _model_tasks[n] == task)
    )


def model_task(name: str) -> str:
    """``"semantic"`` or ``"instance"``: what the registered model ``name`` predicts."""
    model_entrypoint(name)  # a clear error for unknown names
    return _model_tasks[name]


def is_model(name: str) -> bool:
    return name in _model_entrypoints


def model_entrypoint(name: str) -> Callable[..., SegmentationModel]:
    """The function registered as ``name``; a clear error with close names otherwise."""
    try:
        return _model_entrypoints[name]
    except KeyError:
        close = difflib.get_close_matches(name, list(_model_entrypoints), n=4, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(
            f"unknown model {name!r}.{hint} atrous.list_models() lists all {len(_model_entrypoints)} models."
        ) from None


def create_model(name: str, **kwargs) -> SegmentationModel:
    """Build a registered model by name: the one public way to make a model.

    Example::

        model = atrous.create_model("deeplabv3_resnet101", num_classes=21,
                                    output_stride=16, multi_grid=(1, 2, 4))

    Keyword arguments are those of the model's family (every family takes
    ``num_classes``, ``output_stride``, ``pretrained_backbone`` and ``aux``; see
    ``docs/models.md``). ``checkpoint_path`` loads a whole-model state dict (a
    ``.safetensors`` file, or a ``torch.save`` file such as torchvision's
    ``deeplabv3_resnet50_coco-cd0a2569.pth``) with every key checked.

    Raises:
        ValueError: an unknown model name (with close names).
        TypeError: an option the model does not take, named with close ones and the
            model's options, before anything is built.
    """
    fn = model_entrypoint(name)
    checkpoint_path = kwargs.pop("checkpoint_path", None)
    # Before building: a typo would otherwise surface deep in the **kwargs chain as
    # "create_resnet() got an unexpected keyword argument", after half the model was built.
    check_options(fn, kwargs, what=f"model {name!r}", where="model.options")
    model = fn(**kwargs)
    if checkpoint_path is not None:
        from .weights import load_checkpoint

        load_checkpoint(model, checkpoint_path)
    return model
