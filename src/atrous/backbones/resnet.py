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

import torch
from torch import nn

from ..layers.conv_norm_act import set_conv_dilation
from ..utils.state_dict import fetch_weights, load_strict
from .features import FeatureInfo, FeatureSpec

OUTPUT_STRIDES = (8, 16, 32)


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


class ResNet(nn.Module):
    """A ResNet feature extractor returning the stem and the four stages' outputs.

    ``forward(x)`` returns a list of five tensors described by :attr:`feature_info`:
    the stem after ReLU (reduction 2) and ``layer1`` … ``layer4`` (reductions 4, 8, 16,
    32 at output stride 32; capped at the output stride otherwise).

    Args:
        block: :class:`BasicBlock` or :class:`Bottleneck`.
        layers: units per stage, e.g. (3, 4, 23, 3) for ResNet-101.
        output_stride: 8, 16 or 32.
        multi_grid: unit rates for the last stage (see the module docstring), one per
            unit of ``layer4``; ``None`` for torchvision's convention.
        in_chans: input channels.
    """

    def __init__(
        self,
        block: type[BasicBlock | Bottleneck],
        layers: Sequence[int],
        *,
        output_stride: int = 32,
        multi_grid: Sequence[int] | None = None,
        in_chans: int = 3,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        self.in_chans = in_chans
        self.conv1 = nn.Conv2d(in_chans, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = norm_layer(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        stages = []
        for i, (planes, units) in enumerate(zip((64, 128, 256, 512), layers, strict=True)):
            stride = 1 if i == 0 else 2
            stage = []
            for u in range(units):
                stage.append(block(inplanes, planes, stride if u == 0 else 1, norm_layer))
                inplanes = planes * block.expansion
            stages.append(nn.Sequential(*stage))
        self.layer1, self.layer2, self.layer3, self.layer4 = stages
        self._stage_channels = [64] + [p * block.expansion for p in (64, 128, 256, 512)]
        self._init_weights()
        self.aux_module = "layer3"  # where PSPNet §4.2 puts its auxiliary loss
        self.output_stride = 32
        self.multi_grid: tuple[int, ...] | None = None
        self.feature_info = FeatureInfo()
        self.set_output_stride(output_stride, multi_grid)

    def _init_weights(self) -> None:
        # torchvision's ResNet initialisation.
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d | nn.GroupNorm):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def set_output_stride(self, output_stride: int, multi_grid: Sequence[int] | None = None) -> None:
        """Set every unit's stride and dilation for ``output_stride``; weights untouched."""
        if output_stride not in OUTPUT_STRIDES:
            raise ValueError(f"output_stride must be one of {OUTPUT_STRIDES}, got {output_stride!r}")
        stages = (self.layer1, self.layer2, self.layer3, self.layer4)
        if multi_grid is not None:
            multi_grid = tuple(int(r) for r in multi_grid)
            if len(multi_grid) != len(self.layer4) or any(r < 1 for r in multi_grid):
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
        self.output_stride = output_stride
        self.multi_grid = multi_grid
        names = ("relu", "layer1", "layer2", "layer3", "layer4")
        self.feature_info = FeatureInfo(
            FeatureSpec(c, r, n) for c, r, n in zip(self._stage_channels, reductions, names, strict=True)
        )

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stem = self.relu(self.bn1(self.conv1(x)))  # (B, 64, H/2, W/2)
        c2 = self.layer1(self.maxpool(stem))  # (B, 64·e, H/4, W/4)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        c5 = self.layer4(c4)
        return [stem, c2, c3, c4, c5]

    def load_pretrained(self, source: str) -> None:
        """Load ImageNet weights: a local file, a URL, or a torchvision weight name.

        torchvision's classification state dict loads with every backbone key matched;
        its ``fc`` classifier is dropped (a segmentation backbone has none). Any other
        missing or unexpected key is an error that lists the keys.
        """
        state_dict = fetch_weights(source, default_weights=self.torchvision_weights)
        load_strict(self, state_dict, source=source, ignore_prefixes=("fc.",))

    torchvision_weights: str | None = None


_RESNET_SPECS: dict[str, tuple[type[BasicBlock | Bottleneck], tuple[int, ...], str]] = {
    "resnet18": (BasicBlock, (2, 2, 2, 2), "ResNet18_Weights"),
    "resnet34": (BasicBlock, (3, 4, 6, 3), "ResNet34_Weights"),
    "resnet50": (Bottleneck, (3, 4, 6, 3), "ResNet50_Weights"),
    "resnet101": (Bottleneck, (3, 4, 23, 3), "ResNet101_Weights"),
}


def create_resnet(
    name: str,
    *,
    output_stride: int = 32,
    multi_grid: Sequence[int] | None = None,
    in_chans: int = 3,
    pretrained: str | None = None,
    norm_layer: type[nn.Module] = nn.BatchNorm2d,
) -> ResNet:
    """Build ``resnet18/34/50/101``; ``pretrained`` is a file, URL or torchvision weight name.
    ``norm_layer`` replaces every batch norm (Mask R-CNN fine-tunes with frozen ones)."""
    block, layers, weights_enum = _RESNET_SPECS[name]
    model = ResNet(
        block, layers, output_stride=output_stride, multi_grid=multi_grid, in_chans=in_chans, norm_layer=norm_layer
    )
    model.torchvision_weights = weights_enum
    if pretrained:
        model.load_pretrained(pretrained)
    return model
