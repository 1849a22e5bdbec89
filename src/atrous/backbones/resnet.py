"""ResNet-18/34/50/101 with output stride 8, 16 or 32 (DeepLab v3, §3.1 and §4.1).

The module and parameter names are torchvision's (``conv1``, ``bn1``, ``layer1.0.conv2``,
``layer2.0.downsample.0`` …), so a torchvision ImageNet state dict loads with every key
accounted for (its ``fc`` classifier is the only part a segmentation backbone drops).

Output stride: DeepLab v3 §3.1 removes the striding of the last stages and dilates the
following convolutions instead ("atrous convolution … with rate r = 2 when output_stride
= 16 for block4"). :meth:`ResNet.set_output_stride` computes, for every residual unit,
its stride and dilation from the requested output stride; construction and the
evaluation-time switch (§4.3: train at 16, evaluate at 8) run the same code.

Two conventions for the dilation of a dilated stage's units:

* ``multi_grid=None`` (default) follows torchvision's ``replace_stride_with_dilation``:
  the first unit of a dilated stage keeps the previous stage's rate and the others use
  the new rate. This is what torchvision's FCN and DeepLab v3 checkpoints were trained
  with, so the default reproduces them exactly.
* ``multi_grid=(r1, r2, r3)`` follows the paper's Multi-grid Method (§3.2, §4.1):
  unit i of the last stage uses ``multi_grid[i] × the stage's rate``, for every unit,
  e.g. (2, 4, 8) for Multi_Grid = (1, 2, 4) at output stride 16.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from ..layers.conv_norm_act import set_conv_dilation
from .base import OUTPUT_STRIDES, Backbone
from .features import FeatureSpec

__all__ = ["OUTPUT_STRIDES", "BasicBlock", "Bottleneck", "ResNet", "create_resnet"]


class BasicBlock(nn.Module):
    """Two 3×3 convolutions (ResNet-18/34). Stride on the first; both dilated alike."""

    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, norm_layer: type[nn.Module] = nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = norm_layer(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride, norm_layer)

    def set_stride_dilation(self, stride: int, dilation: int) -> None:
        set_conv_dilation(self.conv1, dilation, stride)
        set_conv_dilation(self.conv2, dilation)
        if self.downsample is not None:
            self.downsample[0].stride = (stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 → 3×3 → 1×1 (ResNet-50/101), stride and dilation on the 3×3 (ResNet v1.5)."""

    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, norm_layer: type[nn.Module] = nn.BatchNorm2d):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = norm_layer(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = norm_layer(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = norm_layer(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = _downsample(inplanes, planes * self.expansion, stride, norm_layer)

    def set_stride_dilation(self, stride: int, dilation: int) -> None:
        set_conv_dilation(self.conv2, dilation, stride)
        if self.downsample is not None:
            self.downsample[0].stride = (stride, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def _downsample(inplanes: int, outplanes: int, stride: int, norm_layer: type[nn.Module]) -> nn.Sequential | None:
    if stride == 1 and inplanes == outplanes:
        return None
    return nn.Sequential(nn.Conv2d(inplanes, outplanes, 1, stride=stride, bias=False), norm_layer(outplanes))


class ResNet(Backbone):
    """A ResNet feature extractor returning the stem and the four stages' outputs.

    ``forward(x)`` returns a list of five tensors described by :attr:`feature_info`:
    the stem after ReLU (reduction 2) and ``layer1`` … ``layer4`` (reductions 4, 8, 16,
    32 at output stride 32; capped at the output stride otherwise).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: units per stage, e.g. (3, 4, 23, 3) for ResNet-101.
        norm_layer: replaces every batch norm (Mask R-CNN fine-tunes with frozen ones).
        **common: ``output_stride``, ``multi_grid`` (unit rates for the last stage, see the
            module docstring, one per unit of ``layer4``; ``None`` for torchvision's
            convention) and ``in_chans``, as :class:`~atrous.backbones.base.Backbone` takes them.
    """

    aux_module = "layer3"  # where PSPNet §4.2 puts its auxiliary loss
    classifier_prefixes = ("fc.",)
    has_multi_grid = True

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        *,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        **common: Any,
    ) -> None:
        # Plain attributes, read by build() while Backbone.__init__ runs.
        self.block, self.layers, self.norm_layer = block, tuple(layers), norm_layer
        self.multi_grid: tuple[int, ...] | None = None
        super().__init__(**common)

    def build(self, in_chans: int) -> None:
        block, norm_layer = self.block, self.norm_layer
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        stages = []
        for i, (planes, units) in enumerate(zip((64, 128, 256, 512), self.layers, strict=True)):
            stride = 1 if i == 0 else 2
            stage = []
            for u in range(units):
                stage.append(block(inplanes, planes, stride if u == 0 else 1, norm_layer))
                inplanes = planes * block.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self._stage_channels = [64] + [p * block.expansion for p in (64, 128, 256, 512)]

    def _set_strides(self, output_stride: int, multi_grid: tuple[int, ...] | None) -> list[FeatureSpec]:
        """Every unit's stride and dilation (module docstring); ``multi_grid`` checked first."""
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        if multi_grid is not None and (len(multi_grid) != len(self.layer4) or any(r < 1 for r in multi_grid)):
            raise ValueError(
                f"multi_grid must give one positive rate per unit of the last stage "
                f"({len(self.layer4)} units), got {multi_grid}"
            )
        current_stride, dilation = 4, 1  # after conv1 (stride 2) and maxpool (stride 2)
        reductions = [2]
        for i, stage in enumerate(stages):
            nominal = 1 if i == 0 else 2
            previous_dilation = dilation
            if current_stride * nominal > output_stride:
                dilation *= nominal  # trade this stage's stride for dilation (§3.1)
                stride = 1
            else:
                stride = nominal
                current_stride *= nominal
            reductions.append(current_stride)
            last = i == len(stages) - 1
            for u, unit in enumerate(stage):
                if last and multi_grid is not None:
                    rate = dilation * multi_grid[u]
                else:
                    rate = previous_dilation if u == 0 else dilation
                unit.set_stride_dilation(stride if u == 0 else 1, rate)
        self.multi_grid = multi_grid
        names = ("relu", "layer1", "layer2", "layer3", "layer4")
        return [FeatureSpec(c, r, n) for c, r, n in zip(self._stage_channels, reductions, names, strict=True)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H/2, W/2)
        c2 = self.layer1(self.maxpool(stem))  # (B, 64·e, H/4, W/4)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [stem, c2, c3, c4, c5]


_RESNET_SPECS: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, ...], str]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), "ResNet18_Weights"),
    "resnet34": (BasicBlock, (3, 4, 6, 3), "ResNet34_Weights"),
    "resnet50": (Bottleneck, (3, 4, 6, 3), "ResNet50_Weights"),
    "resnet101": (Bottleneck, (3, 4, 23, 3), "ResNet101_Weights"),
}


def create_resnet(name: str, *, pretrained: str | None = None, **kwargs: Any) -> ResNet:
    """Build ``resnet18/34/50/101`` with :class:`ResNet`'s keywords (``output_stride``,
    ``multi_grid``, ``in_chans``, ``norm_layer``); ``pretrained`` is a file, URL or
    torchvision weight name."""
    block, layers, weights_enum = _RESNET_SPECS[name]
    model = ResNet(block, layers, **kwargs)
    model.torchvision_weights = weights_enum
    return model.with_weights(pretrained)
