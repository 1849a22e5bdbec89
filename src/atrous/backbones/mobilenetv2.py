"""MobileNetV2 with output stride 8, 16 or 32 (Sandler et al. 2018, Table 2 and §6.3).

The module and parameter names are torchvision's (``features.0.0.weight``,
``features.1.conv.0.0.weight``, ``features.2.conv.1.0.weight`` …, with ``features`` an
``nn.Sequential`` keeping torchvision's indices), so a torchvision ImageNet state dict
loads with every key accounted for; its ``classifier`` is the only part dropped.

Layout (width multiplier 1.0), ``features[i]``:

====  ==========================  ========  ==================
i     what                        channels  stride (nominal)
====  ==========================  ========  ==================
0     3×3 conv                    32        2
1     bottleneck t=1              16        1   → reduction 2
2–3   bottleneck t=6, n=2         24        2   → reduction 4
4–6   bottleneck t=6, n=3         32        2   → reduction 8
7–10  bottleneck t=6, n=4         64        2
11–13 bottleneck t=6, n=3         96        1   → reduction 16
14–16 bottleneck t=6, n=3         160       2
17    bottleneck t=6, n=1         320       1
18    1×1 conv                    1280      1   → reduction 32
====  ==========================  ========  ==================

Output stride: as in DeepLab v3 §3.1 (and the MobileNetV2 paper §6.3 / DeepLab v3+, which
use MobileNetV2 at output stride 16 or 8), every inverted-residual block whose stride
would take the running stride past the output stride gets stride 1 instead, and the
depthwise convolutions after it are dilated. :meth:`MobileNetV2.set_output_stride`
computes every block's stride and dilation; construction and the evaluation-time switch
(train at 16, evaluate at 8) run the same code.

Dilation rule (the one of DeepLab's TensorFlow MobileNet reference, ``mobilenet.py``:
``layer_rate = rate; rate *= stride``, and of torchvision's ResNet
``replace_stride_with_dilation``, hence the same as :mod:`atrous.backbones.resnet`):
a block whose stride is removed keeps the *previous* dilation for its depthwise conv,
and the blocks after it use the multiplied dilation. So at output stride 16, block 14
is 3×3 stride 1 dilation 1 and blocks 15–17 have dilation 2; at output stride 8, blocks
7 and 8–14 have dilation 1, 2 (block 14 keeps 2, stride removed) and 15–17 have 4.
This is the exact à trous algorithm: the features at output stride 16, taken every
second pixel, equal those at output stride 32 (likewise every fourth pixel at 8).
Note that torchvision's ``mobilenet_v3_large(dilated=True)`` instead gives the
de-strided block itself the new dilation (2), which is not exact in that sense.

The residual connection of a block depends on its *nominal* stride (torchvision's
``use_res_connect``); every block with nominal stride 2 changes channels, so removing
its stride never adds a shortcut.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from ..layers.conv_norm_act import ConvNormAct, set_conv_dilation
from .base import OUTPUT_STRIDES, Backbone
from .features import FeatureSpec

__all__ = ["OUTPUT_STRIDES", "InvertedResidual", "MobileNetV2", "create_mobilenetv2"]

# Table 2: expansion t, output channels c, repeats n, stride s of the first repeat.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)
STEM_CHANNELS = 32
LAST_CHANNELS = 1280

# Published features: index into ``features`` → nominal reduction.
_FEATURE_INDICES = (1, 3, 6, 13, 18)

_ReLU6 = partial(nn.ReLU6, inplace=True)


class InvertedResidual(nn.Module):
    """1×1 expansion → 3×3 depthwise → 1×1 linear projection (§3.3, Table 1).

    ``conv`` is torchvision's ``Sequential``: ``[pw (if t > 1), dw, pw-linear conv, bn]``,
    with ``pw`` and ``dw`` conv → BN → ReLU6. Stride and dilation are on the depthwise conv.
    """

    def __init__(
        self, inp: int, oup: int, stride: int, expand_ratio: int, norm_layer: type[nn.Module] = nn.BatchNorm2d
    ) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError(f"stride must be 1 or 2, got {stride}")
        hidden = inp * expand_ratio
        self.stride = stride  # nominal stride (output stride 32)
        self.use_res_connect = stride == 1 and inp == oup
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(inp, hidden, 1, norm_layer=norm_layer, act_layer=_ReLU6))
        layers += [
            ConvNormAct(hidden, hidden, 3, stride=stride, groups=hidden, norm_layer=norm_layer, act_layer=_ReLU6),
            nn.Conv2d(hidden, oup, 1, bias=False),
            norm_layer(oup),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = oup

    @property
    def depthwise(self) -> nn.Conv2d:
        """The 3×3 depthwise convolution (the only one with stride or dilation)."""
        return self.conv[-3][0]  # type: ignore[index,return-value]

    def set_stride_dilation(self, stride: int, dilation: int) -> None:
        set_conv_dilation(self.depthwise, dilation, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv(x)
        return x + out if self.use_res_connect else out


class MobileNetV2(Backbone):
    """A MobileNetV2 feature extractor returning one feature map per stride.

    ``forward(x)`` returns a list of five tensors described by :attr:`feature_info`:
    ``features.1`` (16 ch, reduction 2), ``features.3`` (24 ch, 4: DeepLab v3+'s
    low-level feature), ``features.6`` (32 ch, 8), ``features.13`` (96 ch, 16) and
    ``features.18`` (the 1×1 conv to 1280 ch, 32); reductions are capped at the
    output stride. :attr:`aux_module` names the stride-16 feature, for an auxiliary head.

    Args:
        norm_layer: replaces every batch norm.
        **common: ``output_stride`` and ``in_chans``, as
            :class:`~atrous.backbones.base.Backbone` takes them (no multi-grid).
    """

    torchvision_weights = "MobileNet_V2_Weights"
    classifier_prefixes = ("classifier.",)
    aux_module = "features.13"

    def __init__(self, *, norm_layer: type[nn.Module] = nn.BatchNorm2d, **common: Any) -> None:
        self.norm_layer = norm_layer  # read by build() while Backbone.__init__ runs
        super().__init__(**common)

    def build(self, in_chans: int) -> None:
        norm_layer = self.norm_layer
        layers: list[nn.Module] = [
            ConvNormAct(in_chans, STEM_CHANNELS, 3, stride=2, norm_layer=norm_layer, act_layer=_ReLU6)
        ]
        channels = STEM_CHANNELS
        for t, c, n, s in INVERTED_RESIDUAL_SETTING:
            for i in range(n):
                layers.append(InvertedResidual(channels, c, s if i == 0 else 1, t, norm_layer))
                channels = c
        layers.append(ConvNormAct(channels, LAST_CHANNELS, 1, norm_layer=norm_layer, act_layer=_ReLU6))
        self.features = nn.Sequential(*layers)

    def _set_strides(self, output_stride: int, multi_grid: tuple[int, ...] | None) -> list[FeatureSpec]:
        """Every block's stride and dilation (the module docstring's rule)."""
        current_stride, dilation = 2, 1  # after the stem (features.0, stride 2; never removed)
        reductions: dict[int, int] = {}
        for index, block in enumerate(self.features):
            if isinstance(block, InvertedResidual):
                if current_stride * block.stride > output_stride:
                    # Trade the stride for dilation: this block keeps the previous rate,
                    # the following blocks use the multiplied one (module docstring).
                    block.set_stride_dilation(1, dilation)
                    dilation *= block.stride
                else:
                    block.set_stride_dilation(block.stride, dilation)
                    current_stride *= block.stride
            reductions[index] = current_stride
        return [FeatureSpec(self._channels(i), reductions[i], f"features.{i}") for i in _FEATURE_INDICES]

    def _channels(self, index: int) -> int:
        module = self.features[index]
        if isinstance(module, InvertedResidual):
            return module.out_channels
        return module[0].out_channels  # type: ignore[index]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for index, module in enumerate(self.features):
            x = module(x)
            if index in _FEATURE_INDICES:
                out.append(x)
        return out


def create_mobilenetv2(*, pretrained: str | None = None, **kwargs: Any) -> MobileNetV2:
    """Build MobileNetV2 (width 1.0) with :class:`MobileNetV2`'s keywords (``output_stride``,
    ``in_chans``, ``norm_layer``); ``pretrained`` is a file, URL or torchvision weight name."""
    return MobileNetV2(**kwargs).with_weights(pretrained)
