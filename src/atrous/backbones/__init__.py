"""Stride-aware backbones that publish ``feature_info``, by name.

Every backbone is a :class:`~atrous.backbones.base.Backbone`; its docstring is the
protocol the heads and the registry-wide tests rely on (features and ``feature_info``,
``set_output_stride``, ``aux_module``, ``in_chans``, ``load_pretrained``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from functools import partial
from typing import Any

from ..utils.registry import Registry
from .base import OUTPUT_STRIDES, Backbone
from .features import FeatureInfo, FeatureSpec
from .resnet import _RESNET_SPECS, BasicBlock, Bottleneck, ResNet, create_resnet

# name → (module, builder); imported when first built, so ``import atrous`` stays light.
_BACKBONES: Registry[tuple[str, str]] = Registry("backbone", lead="; did you mean ")
for _name in _RESNET_SPECS:
    _BACKBONES.add(_name, ("resnet", "create_resnet"))
_BACKBONES.add("vgg16", ("vgg", "create_vgg16"))
_BACKBONES.add("mobilenetv2", ("mobilenetv2", "create_mobilenetv2"))
_BACKBONES.add("xception65", ("xception", "create_xception65"))
BACKBONES = tuple(_BACKBONES)


def backbone_builder(name: str) -> Callable[..., Backbone]:
    """The function that builds backbone ``name`` (its family's ``create_*``, the name bound)."""
    module_name, builder_name = _BACKBONES.get(name)
    builder = getattr(importlib.import_module(f"{__name__}.{module_name}"), builder_name)
    return partial(create_resnet, name) if builder is create_resnet else builder


def create_backbone(name: str, **kwargs: Any) -> Backbone:
    """Build a backbone by name (``list(BACKBONES)``).

    The keywords are its family's: ``output_stride`` (8, 16 or 32; default 32),
    ``multi_grid`` (ResNet only), ``in_chans`` (3), ``pretrained`` (a file, URL or
    torchvision weight name) and the family's own (``norm_layer``, ``fully_conv`` …).
    """
    builder = backbone_builder(name)  # atrous.options follows this name to read the keywords
    check_backbone_options(kwargs)
    return builder(**kwargs)


def check_backbone_options(options: dict[str, Any]) -> None:
    """The options every backbone shares, of their types, before anything is built: they come
    from a config's ``model.options`` as YAML, where a typo is text (ValueError naming it)."""
    in_chans = options.get("in_chans", 3)
    if isinstance(in_chans, bool) or not isinstance(in_chans, int) or in_chans < 1:
        raise ValueError(f"in_chans must be a positive integer, got {in_chans!r}")
    norm_layer = options.get("norm_layer")
    if norm_layer is not None and not callable(norm_layer):
        raise ValueError(
            f"norm_layer must be a normalisation layer class such as torch.nn.BatchNorm2d (a Python API "
            f"option: a config cannot name one), got {norm_layer!r}"
        )


__all__ = [
    "BACKBONES",
    "OUTPUT_STRIDES",
    "Backbone",
    "BasicBlock",
    "Bottleneck",
    "FeatureInfo",
    "FeatureSpec",
    "ResNet",
    "backbone_builder",
    "create_backbone",
]
