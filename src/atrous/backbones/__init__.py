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
    return builder(**kwargs)


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
