"""VGG-16 (Simonyan & Zisserman 2015, configuration D) as a segmentation backbone.

Module and parameter names are torchvision's (``features.0.weight`` … ``features.28``), so
``torchvision.models.vgg16().state_dict()`` loads strict. With ``fully_conv=True`` the
backbone also carries FCN's convolutionalised classifier (Long et al. 2015, §3.1): fc6 as
a 7×7 convolution to 4096 channels and fc7 as a 1×1 convolution, initialised from
torchvision's ``classifier.0`` and ``classifier.3`` by reshaping the fully connected
weights ("fully connected layers can also be viewed as convolutions with kernels that
cover their entire input regions").

Pooling. VGG's five 2×2 max poolings set the stride to 32. ``ceil_mode=True`` pools the
last partial window as Caffe does (FCN and DeepLab were Caffe models): cell *j* of a
stride-*s* map then covers input pixels ``[s·j, s·j + s)`` for any input size, so score
maps stay aligned with the input and an upsampling by *s* followed by a crop lands each
score on its pixels. ``ceil_mode=False`` is torchvision's (identical for sizes divisible
by 32).

Output stride (DeepLab v1 §3.1): "we skip subsampling after the last two max-pooling
layers … and modify the convolutional filters in the layers that follow them by
introducing zeros to increase their length (2× in the last three convolutional
layers …)". :meth:`VGG.set_output_stride` turns every pooling past the output stride
into a 3×3, stride-1, padding-1 max pooling (the DeepLab reference nets' pool4/pool5)
and doubles the dilation of the convolutions after each one.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..layers.conv_norm_act import set_conv_dilation
from .base import OUTPUT_STRIDES, Backbone
from .features import FeatureSpec

__all__ = ["OUTPUT_STRIDES", "VGG", "VGG16_CFG", "create_vgg16"]

# Configuration D: channels per 3×3 convolution, "M" for a max pooling.
VGG16_CFG = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M")


class VGG(Backbone):
    """VGG-16 returning the output of each of its five poolings (and fc7 if fully_conv).

    ``forward(x)`` returns the maps :attr:`feature_info` describes: pool1 … pool5
    (``features.4``, ``.9``, ``.16``, ``.23``, ``.30``; 64, 128, 256, 512, 512 channels;
    reductions 2 … 32, capped at the output stride) and, with ``fully_conv``, fc7 (4096
    channels, after ReLU and dropout).

    Args:
        ceil_mode: Caffe's pooling (see the module docstring).
        fully_conv: add FCN's fc6/fc7 convolutions.
        dropout: after fc6 and fc7, as in VGG's classifier (0.5).
        **common: ``output_stride`` and ``in_chans``, as
            :class:`~atrous.backbones.base.Backbone` takes them (no multi-grid).
    """

    torchvision_weights = "VGG16_Weights"
    # Without fully_conv the whole classifier is dropped; with it, fc8 (classifier.6, the
    # 1000 ImageNet classes) is, fc6/fc7 having been renamed (convert_state_dict).
    classifier_prefixes = ("classifier.",)

    def __init__(
        self, *, ceil_mode: bool = False, fully_conv: bool = False, dropout: float = 0.5, **common: Any
    ) -> None:
        # Plain attributes, read by build() while Backbone.__init__ runs.
        self.ceil_mode, self.fully_conv, self.dropout = ceil_mode, fully_conv, dropout
        super().__init__(**common)

    def build(self, in_chans: int) -> None:
        layers: list[nn.Module] = []
        channels = in_chans
        for v in VGG16_CFG:
            if v == "M":
                layers.append(nn.MaxPool2d(2, 2, ceil_mode=self.ceil_mode))
            else:
                layers += [nn.Conv2d(channels, v, 3, padding=1), nn.ReLU(inplace=True)]
                channels = v
        self.features = nn.Sequential(*layers)
        self.pool_indices = [i for i, m in enumerate(self.features) if isinstance(m, nn.MaxPool2d)]
        self.aux_module = f"features.{self.pool_indices[3]}"  # pool4, 512 channels
        if self.fully_conv:
            self.fc6 = nn.Conv2d(512, 4096, 7, padding=3)
            self.fc7 = nn.Conv2d(4096, 4096, 1)
            self.relu = nn.ReLU(inplace=True)
            self.drop = nn.Dropout(self.dropout)

    def _set_strides(self, output_stride: int, multi_grid: tuple[int, ...] | None) -> list[FeatureSpec]:
        """Make the poolings past ``output_stride`` stride 1 and dilate what follows."""
        stride, dilation = 1, 1
        reductions = []
        for i, module in enumerate(self.features):
            if isinstance(module, nn.Conv2d):
                set_conv_dilation(module, dilation)
            elif isinstance(module, nn.MaxPool2d):
                if stride * 2 > output_stride:
                    # 3×3 / stride 1 / pad 1 keeps the size and still pools (DeepLab's pool4/pool5).
                    self.features[i] = nn.MaxPool2d(3, 1, padding=1)
                    dilation *= 2
                else:
                    self.features[i] = nn.MaxPool2d(2, 2, ceil_mode=self.ceil_mode)
                    stride *= 2
                reductions.append(stride)
        if self.fully_conv:
            set_conv_dilation(self.fc6, dilation)
        specs = [
            FeatureSpec(c, r, f"features.{i}")
            for c, r, i in zip((64, 128, 256, 512, 512), reductions, self.pool_indices, strict=True)
        ]
        if self.fully_conv:
            specs.append(FeatureSpec(4096, reductions[-1], "fc7"))
        return specs

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        features = []
        start = 0
        for end in self.pool_indices:
            x = self.features[start : end + 1](x)
            features.append(x)
            start = end + 1
        if self.fully_conv:
            x = self.drop(self.relu(self.fc6(x)))  # (B, 4096, H/32, W/32)
            features.append(self.drop(self.relu(self.fc7(x))))
        return features

    def convert_state_dict(self, state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """With ``fully_conv``, torchvision's fc6/fc7 (``classifier.0``, ``classifier.3``)
        become the 7×7 and 1×1 convolutions (FCN §3.1)."""
        if self.fully_conv and "classifier.0.weight" in state_dict:
            state_dict["fc6.weight"] = state_dict.pop("classifier.0.weight").reshape(4096, 512, 7, 7)
            state_dict["fc6.bias"] = state_dict.pop("classifier.0.bias")
            state_dict["fc7.weight"] = state_dict.pop("classifier.3.weight").reshape(4096, 4096, 1, 1)
            state_dict["fc7.bias"] = state_dict.pop("classifier.3.bias")
        return state_dict


def create_vgg16(*, pretrained: str | None = None, **kwargs: Any) -> VGG:
    """Build VGG-16 with :class:`VGG`'s keywords (``output_stride``, ``in_chans``, ``ceil_mode``,
    ``fully_conv``, ``dropout``); ``pretrained`` is a file, URL or torchvision weight name."""
    return VGG(**kwargs).with_weights(pretrained)
