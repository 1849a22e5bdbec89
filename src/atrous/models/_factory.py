"""Making models: by name (:func:`create_model`), from a saved folder (:func:`load_model`),
and from a recorded config and a state dict (:func:`rebuild_model`, which a training
checkpoint is loaded through too)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from ..options import check_options
from ..utils.state_dict import load_state_dict_file, load_strict
from ._registry import model_entrypoint
from .pretrained import CONFIG_NAME, SAVE_KEYS, WEIGHTS_NAME


def create_model(name: str, *, checkpoint_path: str | os.PathLike | None = None, **kwargs: Any):
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
    # Before building: a typo would otherwise surface deep in the **kwargs chain as
    # "create_resnet() got an unexpected keyword argument", after half the model was built.
    check_options(fn, kwargs, what=f"model {name!r}", where="model.options")
    model = fn(**kwargs)
    if checkpoint_path is not None:
        load_checkpoint(model, checkpoint_path)
    return model


def model_from_config(config: Mapping[str, Any]):
    """The architecture a recorded ``config`` describes (``model.config``, or a saved
    ``config.json`` with its ``format``/``version``/``metadata`` keys), freshly initialised."""
    options = {k: v for k, v in config.items() if k not in SAVE_KEYS}
    return create_model(options.pop("name"), **options)


def rebuild_model(
    config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    *,
    metadata: Mapping[str, Any] | None = None,
    source: str,
    config_source: str = "the recorded model config",
):
    """A trained model back from what was recorded: ``config`` → :func:`create_model` →
    strict load of ``state_dict`` (mismatches name ``source``) → ``metadata``; in
    evaluation mode, on the CPU.

    ``metadata`` defaults to the config's own (a saved ``config.json`` carries it).
    """
    try:
        model = model_from_config(config)
    except (ValueError, TypeError, KeyError) as exc:  # another model's name, a bad option value …
        reason = " ".join(str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc).split())
        raise ValueError(f"{config_source} does not describe a model atrous can build: {reason}") from exc
    load_strict(model, state_dict, source=source)
    model.metadata = dict(config.get("metadata") or {}) if metadata is None else dict(metadata)
    return model.eval()


def check_metadata(metadata: Any, where: str) -> None:
    """A saved model's ``metadata``: a mapping whose ``palette``, when there is one, is a
    list of ``[r, g, b]`` colours (overlays paint with it); else a ValueError naming ``where``."""
    if not isinstance(metadata, Mapping):
        raise ValueError(f"{where}: metadata must be a mapping (class_names, palette, mean, std …), got {metadata!r}")
    palette = metadata.get("palette")
    if palette is None:
        return
    ok = isinstance(palette, list) and all(
        isinstance(c, list | tuple)
        and len(c) == 3
        and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in c)
        for c in palette
    )
    if not ok:
        raise ValueError(f"{where}: metadata palette must be a list of [r, g, b] colours 0..255, got {palette!r}")


def load_model(directory: str | os.PathLike, *, map_location: str | torch.device = "cpu"):
    """Rebuild a model saved by :func:`~atrous.models.save_pretrained`, in evaluation mode."""
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    weights_path = directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; expected a folder written by save_pretrained")
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("name"), str):
        raise ValueError(f"{config_path} has no model 'name'; expected a config written by save_pretrained")
    check_metadata(config.get("metadata") or {}, str(config_path))
    model = rebuild_model(
        config, load_state_dict_file(weights_path), source=str(weights_path), config_source=str(config_path)
    )
    return model.to(map_location)


def load_checkpoint(model, path: str | os.PathLike):
    """Load a whole-model state dict into ``model``, every key checked.

    Accepts ``.safetensors`` and ``torch.save`` files, including torchvision's
    segmentation checkpoints (``fcn_resnet50_coco-1167a1af.pth``,
    ``deeplabv3_resnet101_coco-586e9e4e.pth`` …): atrous keeps torchvision's module names.
    """
    state_dict = load_state_dict_file(path)
    hint = ""
    aux_classifier = getattr(model, "aux_classifier", None)
    if aux_classifier is None and any(k.startswith("aux_classifier.") for k in state_dict):
        hint = "The file has an auxiliary head: build the model with aux=True to load it."
    elif aux_classifier is not None and not any(k.startswith("aux_classifier.") for k in state_dict):
        hint = "The file has no auxiliary head: build the model with aux=False."
    load_strict(model, state_dict, source=str(path), hint=hint)
    return model
