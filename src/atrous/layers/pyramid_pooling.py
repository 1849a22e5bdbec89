"""PSPNet's pyramid pooling module (Zhao et al. 2017, §3.3)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .adaptive_pool import ExportableAdaptiveAvgPool2d
from .conv_norm_act import ConvNormAct
from .norm import PooledBatchNorm2d
from .upsample import resize


class PyramidPooling(nn.Module):
    """Pool to bins×bins grids, reduce each to C/len(bins) channels, upsample, concatenate.

    §3.3: "The pyramid pooling module fuses features under four different pyramid scales
    … bin sizes of 1×1, 2×2, 3×3 and 6×6 … we use 1×1 convolution layer after each
    pyramid level to reduce the dimension of context representation to 1/N of the
    original one … then directly upsample the low-dimension feature maps to get the same
    size feature as the original feature map via bilinear interpolation. Finally,
    different levels of features are concatenated as the final pyramid pooling global
    feature." The input itself is part of the concatenation, so the output has
    ``in_chs + len(bins) · reduction_chs`` channels (4096 for ResNet's 2048).

    The 1×1 bin uses :class:`PooledBatchNorm2d` so that training with batch size 1 works.
    The other bins pool with :class:`ExportableAdaptiveAvgPool2d` (two matrix products,
    equal to ``nn.AdaptiveAvgPool2d`` to float rounding and faster on CPU), which exports
    to ONNX with dynamic height and width; the 1×1 bin is a global average pool.
    """

    def __init__(
        self,
        in_chs: int,
        bins: Sequence[int] = (1, 2, 3, 6),
        reduction_chs: int | None = None,
        *,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        if not bins:
            raise ValueError("PyramidPooling: bins must not be empty")
        reduction_chs = reduction_chs or in_chs // len(bins)
        self.bins = tuple(int(b) for b in bins)
        self.stages = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(1) if b == 1 else ExportableAdaptiveAvgPool2d(b),
                ConvNormAct(in_chs, reduction_chs, 1, norm_layer=PooledBatchNorm2d if b == 1 else norm_layer),
            )
            for b in self.bins
        )
        self.out_chs = in_chs + len(self.bins) * reduction_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        # Each (B, C/4, h, w), in x's memory layout: concatenating mixed layouts is slow.
        layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
        pooled = [resize(stage(x), size).contiguous(memory_format=layout) for stage in self.stages]
        return torch.cat([x, *pooled], dim=1)
