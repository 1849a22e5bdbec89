"""Image-level features for ASPP (DeepLab v3, §3.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .norm import PooledBatchNorm2d
from .upsample import resize


class GlobalAvgPool(nn.Module):
    """Average over all of H×W, keeping them as 1×1.

    Pooling to a single bin is global whatever the input size (ONNX exports it as
    ``GlobalAveragePool``), so it needs no pooling window fixed at export time. It uses
    the same kernel as torchvision's ``AdaptiveAvgPool2d(1)`` so that the summation
    order, and hence the float32 result, is identical.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.adaptive_avg_pool2d(x, 1)


class ImagePooling(nn.Sequential):
    """Global average pooling → 1×1 conv → BN → ReLU → broadcast back to H×W.

    DeepLab v3 §3.3: "we apply global average pooling on the last feature map of the
    model, feed the resulting image-level features to a 1×1 convolution with 256 filters
    (and batch normalization), and then bilinearly upsample the feature to the desired
    spatial dimension". Upsampling is the house bilinear :func:`resize`, as torchvision
    does it, so outputs agree to the bit. The norm is a :class:`PooledBatchNorm2d`, so
    training with batch size 1 works.

    Layout ``0`` pool, ``1`` conv, ``2`` norm, ``3`` act matches torchvision's
    ``ASPPPooling``, so its weights load unchanged.
    """

    def __init__(self, in_chs: int, out_chs: int, *, act_layer: type[nn.Module] = nn.ReLU) -> None:
        super().__init__(
            GlobalAvgPool(),
            nn.Conv2d(in_chs, out_chs, 1, bias=False),
            PooledBatchNorm2d(out_chs),
            act_layer(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        y = super().forward(x)  # (B, out_chs, 1, 1)
        return resize(y, size)
