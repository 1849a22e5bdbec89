"""What every atrous model carries besides its weights, and how it is saved.

* :func:`records_config` — a family's builder records the arguments the model was built
  with (defaults filled in) as ``model.config``; no family writes its config by hand.
* :class:`PretrainedMixin` — ``config``, ``metadata``, ``save_pretrained`` and ``task``,
  shared by :class:`~atrous.models.SegmentationModel` and Mask R-CNN.
* :func:`save_pretrained` — ``model.safetensors`` + ``config.json`` + the model card
  ``README.md`` (:mod:`atrous.models.card`), written atomically:
  each file goes under a temporary name in the target folder and is renamed into place,
  so an interrupted save never leaves a half-written file where a good one was.

:mod:`atrous.models._factory` reads them back (``load_model``, ``rebuild_model``).
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..utils.atomic import atomic_write, atomic_write_text
from ._registry import task_of

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"

#: Keys ``config.json`` has besides the build arguments (``rebuild_model`` takes them out).
SAVE_KEYS = ("format", "version", "metadata")

#: Build arguments that are not recorded: the saved weights replace a pretrained backbone.
NOT_RECORDED = frozenset({"pretrained_backbone"})

F = TypeVar("F", bound=Callable[..., Any])


def _jsonable(value: Any) -> Any:
    """Tuples become lists, as JSON gives them back (a saved config rebuilds an equal one)."""
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def records_config(builder: F) -> F:
    """Record a model builder's keyword arguments in the model's ``config``.

    The builder's keyword-only parameters (defaults filled in) and whatever its
    ``**options`` received are recorded; positional parameters say which preset it is
    (the backbone, a variant) and are not options, so they are not. Builders call one
    another (a family builder → :func:`~atrous.models.segmentor.build_segmentor`), and
    each records its own arguments into the one config. ``pretrained_backbone`` is left
    out: saved weights replace it. A stride left to the architecture (U-Net's
    ``output_stride=None``) is recorded as built.
    """
    signature = inspect.signature(builder)

    @functools.wraps(builder)
    def build(*args: Any, **kwargs: Any) -> Any:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        recorded: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            kind = signature.parameters[name].kind
            if kind is inspect.Parameter.KEYWORD_ONLY:
                recorded[name] = value
            elif kind is inspect.Parameter.VAR_KEYWORD:
                recorded.update(value)
        model = builder(*args, **kwargs)
        for name, value in recorded.items():
            if name not in NOT_RECORDED:
                model.config[name] = _jsonable(value)
        if model.config.get("output_stride", 0) is None:
            model.config["output_stride"] = model.output_stride
        return model

    return build  # type: ignore[return-value]


class PretrainedMixin:
    """``config`` (the recorded build arguments, plus the registered ``name``),
    ``metadata`` (class names, palette …: saved, never used to build), ``save_pretrained``
    and ``task`` (the registry's answer, see :func:`atrous.models.task_of`)."""

    config: dict[str, Any]
    metadata: dict[str, Any]

    @property
    def task(self) -> str:
        return task_of(self)

    def save_pretrained(self, directory: str | os.PathLike, *, metadata: dict[str, Any] | None = None) -> Path:
        """Write ``model.safetensors`` and ``config.json`` to ``directory``."""
        return save_pretrained(self, directory, metadata=metadata)


def save_pretrained(model: Any, directory: str | os.PathLike, *, metadata: dict | None = None) -> Path:
    """Write the model's weights (safetensors) and build config (JSON) to ``directory``.

    ``metadata`` (JSON-serialisable: class names, palette, normalisation …) is stored
    beside the build arguments and comes back as ``model.metadata`` from
    :func:`atrous.models.load_model`.
    """
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    if "name" not in model.config:
        raise ValueError("save_pretrained needs a model built by atrous.create_model (its config has no name)")
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    metadata = metadata if metadata is not None else getattr(model, "metadata", None)
    config = {"format": "atrous", "version": 1, **model.config, "metadata": metadata or {}}
    atomic_write(directory / WEIGHTS_NAME, lambda tmp: save_file(state, tmp, metadata={"format": "pt"}))
    atomic_write_text(directory / CONFIG_NAME, json.dumps(config, indent=2) + "\n")
    _write_card(directory, config, sum(p.numel() for p in model.parameters()))
    return directory


def _write_card(directory: Path, config: dict[str, Any], parameters: int) -> None:
    """``README.md``: the model card (:mod:`atrous.models.card`), unless the folder holds a
    README that atrous did not write — the user's own file is never replaced."""
    from .card import CARD_MARKER, CARD_NAME, render_model_card

    path = directory / CARD_NAME
    if path.exists():
        with path.open(encoding="utf-8", errors="replace") as f:
            if f.readline().rstrip("\n") != CARD_MARKER:
                warnings.warn(f"{path} was not written by atrous: left as it is, no model card written", stacklevel=3)
                return
    atomic_write_text(path, render_model_card(config, parameters=parameters))
