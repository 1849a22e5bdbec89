"""Saving and loading whole models: ``model.safetensors`` + ``config.json``.

Writes are atomic: each file is written under a temporary name in the target folder
and renamed into place, so an interrupted save never leaves a half-written file where a
good one was.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from ..utils.atomic import atomic_write, atomic_write_text
from ..utils.state_dict import load_state_dict_file, load_strict
from ._registry import create_model
from .segmentor import SegmentationModel

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"


def save_pretrained(model: SegmentationModel, directory: str | os.PathLike, *, metadata: dict | None = None) -> Path:
    """Write the model's weights (safetensors) and build config (JSON) to ``directory``.

    ``metadata`` (JSON-serialisable: class names, palette, normalisation …) is stored
    beside the build arguments and comes back as ``model.metadata`` from :func:`load_model`.
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
    return directory


def load_model(directory: str | os.PathLike, *, map_location: str | torch.device = "cpu") -> SegmentationModel:
    """Rebuild a model saved by :func:`save_pretrained`, in evaluation mode."""
    directory = Path(directory)
    config_path = directory / CONFIG_NAME
    weights_path = directory / WEIGHTS_NAME
    for path in (config_path, weights_path):
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; expected a folder written by save_pretrained")
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{config_path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or "name" not in config:
        raise ValueError(f"{config_path} has no model 'name'; expected a config written by save_pretrained")
    config.pop("format", None)
    config.pop("version", None)
    metadata = config.pop("metadata", {})
    name = config.pop("name")
    model = create_model(name, **config)
    load_strict(model, load_state_dict_file(weights_path), source=str(weights_path))
    model.metadata = metadata
    return model.to(map_location).eval()


def load_checkpoint(model: SegmentationModel, path: str | os.PathLike) -> SegmentationModel:
    """Load a whole-model state dict into ``model``, every key checked.

    Accepts ``.safetensors`` and ``torch.save`` files, including torchvision's
    segmentation checkpoints (``fcn_resnet50_coco-1167a1af.pth``,
    ``deeplabv3_resnet101_coco-586e9e4e.pth`` …): atrous keeps torchvision's module names.
    """
    state_dict = load_state_dict_file(path)
    hint = ""
    if model.aux_classifier is None and any(k.startswith("aux_classifier.") for k in state_dict):
        hint = "The file has an auxiliary head: build the model with aux=True to load it."
    elif model.aux_classifier is not None and not any(k.startswith("aux_classifier.") for k in state_dict):
        hint = "The file has no auxiliary head: build the model with aux=False."
    load_strict(model, state_dict, source=str(path), hint=hint)
    return model
