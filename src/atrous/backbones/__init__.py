"""Stride-aware backbones that publish ``feature_info``."""

from __future__ import annotations

import difflib
from collections.abc import Sequence

from .features import FeatureInfo, FeatureSpec
from .resnet import _RESNET_SPECS, OUTPUT_STRIDES, BasicBlock, Bottleneck, ResNet, create_resnet

BACKBONES = tuple(_RESNET_SPECS)


def create_backbone(
    name: str,
    *,
    output_stride: int = 32,
    multi_grid: Sequence[int] | None = None,
    in_chans: int = 3,
    pretrained: str | None = None,
) -> ResNet:
    """Build a backbone by name (``list(BACKBONES)``)."""
    if name not in BACKBONES:
        close = difflib.get_close_matches(name, BACKBONES, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}{hint} Available: {', '.join(BACKBONES)}")
    return create_resnet(
        name, output_stride=output_stride, multi_grid=multi_grid, in_chans=in_chans, pretrained=pretrained
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
