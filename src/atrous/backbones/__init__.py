"""Stride-aware backbones that publish ``feature_info``.

Every backbone follows one protocol, which the heads and the registry-wide tests rely on:

* ``forward(x)`` returns a list of feature maps, described in order by ``feature_info``
  (channels, reduction w.r.t. the input, producing module);
* ``output_stride`` and ``set_output_stride(output_stride, multi_grid=None)``: strides past
  the output stride become dilation, in place, weights untouched (DeepLab v3 §3.1);
* ``aux_module``: the module whose feature an auxiliary FCN head reads;
* ``in_chans`` and ``load_pretrained(source)`` (file, URL or named reference weights,
  loaded strict).
"""

from __future__ import annotations

import difflib
import importlib
from collections.abc import Sequence
from functools import partial

from torch import nn

from .features import FeatureInfo, FeatureSpec
from .resnet import _RESNET_SPECS, OUTPUT_STRIDES, BasicBlock, Bottleneck, ResNet, create_resnet

# name → (module, builder); imported when first built, so ``import atrous`` stays light.
_BUILDERS: dict[str, tuple[str, str]] = {
    **{name: ("resnet", "create_resnet") for name in _RESNET_SPECS},
    "vgg16": ("vgg", "create_vgg16"),
    "mobilenetv2": ("mobilenetv2", "create_mobilenetv2"),
    "xception65": ("xception", "create_xception65"),
}
BACKBONES = tuple(_BUILDERS)


def create_backbone(
    name: str,
    *,
    output_stride: int = 32,
    multi_grid: Sequence[int] | None = None,
    in_chans: int = 3,
    pretrained: str | None = None,
    **kwargs,
) -> nn.Module:
    """Build a backbone by name (``list(BACKBONES)``); extra keywords go to its family."""
    if name not in _BUILDERS:
        close = difflib.get_close_matches(name, BACKBONES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}{hint} Available: {', '.join(BACKBONES)}")
    module_name, builder_name = _BUILDERS[name]
    builder = getattr(importlib.import_module(f"{__name__}.{module_name}"), builder_name)
    if builder is create_resnet:
        builder = partial(create_resnet, name)
    return builder(
        output_stride=output_stride, multi_grid=multi_grid, in_chans=in_chans, pretrained=pretrained, **kwargs
    )


__all__ = [
    "BACKBONES",
    "OUTPUT_STRIDES",
    "BasicBlock",
    "Bottleneck",
    "FeatureInfo",
    "FeatureSpec",
    "ResNet",
    "create_backbone",
]
