"""The model table: ``@register_model`` functions by name, each with its task, recorded once.

A leaf: it imports nothing from :mod:`atrous.models`, so every family, the factory and
the save/load mixin can import it. Models are built through
:func:`atrous.models.create_model`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from ..utils.registry import Registry

TASKS = ("semantic", "instance")

_MODELS: Registry[Callable[..., Any]] = Registry("model", listing="atrous.list_models()", n=4)


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {', '.join(TASKS)}, got {task!r}")


def register_model(fn: Callable[..., Any] | None = None, *, task: str = "semantic"):
    """Register a model-building function under its own name: ``@register_model`` for a
    semantic segmentation model, ``@register_model(task="instance")`` for an instance one.

    The built model's ``config`` (its recorded build arguments, see
    :func:`atrous.models.pretrained.records_config`) gets the name, which is what
    :func:`atrous.models.load_model` rebuilds from.
    """
    _check_task(task)

    def register(fn: Callable[..., Any]) -> Callable[..., Any]:
        name = fn.__name__

        @functools.wraps(fn)
        def build(**kwargs):
            model = fn(**kwargs)
            model.config["name"] = name
            return model

        return _MODELS.add(name, build, task=task)

    return register if fn is None else register(fn)


def list_models(pattern: str = "*", *, task: str | None = None) -> list[str]:
    """Registered model names, sorted, optionally filtered by a glob (``"deeplab*"``) and
    by task (``"semantic"`` or ``"instance"``)."""
    if task is None:
        return _MODELS.names(pattern)
    _check_task(task)
    return _MODELS.names(pattern, task=task)


def model_task(name: str) -> str:
    """``"semantic"`` or ``"instance"``: what the registered model ``name`` predicts."""
    return _MODELS.info(name)["task"]


def is_model(name: str) -> bool:
    return name in _MODELS


def model_entrypoint(name: str) -> Callable[..., Any]:
    """The function registered as ``name``; a clear error with close names otherwise."""
    return _MODELS.get(name)


def task_of(model: Any) -> str:
    """``"semantic"`` or ``"instance"``: what ``model`` predicts, for any model.

    An atrous model (or anything carrying an atrous ``config``, such as the int8 runner)
    answers with its registered model's task; another model that declares a ``task``
    attribute (``"semantic"`` or ``"instance"``) with that; torchvision's Mask R-CNN is
    ``"instance"``; every other module (a torchvision segmentation model, say) is
    ``"semantic"``: one tensor in, per-pixel logits out.
    """
    config = getattr(model, "config", None)
    name = config.get("name") if isinstance(config, dict) else None
    if isinstance(name, str) and name in _MODELS:
        return model_task(name)
    declared = inspect.getattr_static(model, "task", None)  # a plain attribute, not a property asking back
    if isinstance(declared, str) and declared in TASKS:
        return declared
    from torchvision.models.detection import MaskRCNN

    return "instance" if isinstance(model, MaskRCNN) else "semantic"
