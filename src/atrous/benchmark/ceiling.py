"""This machine's attainable convolution throughput, measured rather than looked up.

A large 3×3 convolution (256 → 256 channels on 128×128, batch 1: 19.3 GFLOP) is about as
friendly to the hardware as a segmentation network's work gets; its GFLOP/s in a given
precision, layout and mode is the ceiling against which ``atrous bench`` reports each
model's achieved throughput. It is a practical ceiling, not the datasheet's peak.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from .timing import median, time_interleaved

CEILING_SHAPE = (1, 256, 128, 128)  # input; the convolution keeps channels and size


def conv_ceiling(
    device: torch.device | str = "cpu",
    dtype: torch.dtype | None = None,
    *,
    channels_last: bool = True,
    train: bool = False,
    repeats: int = 5,
) -> float:
    """GFLOP/s of the reference convolution (forward, or forward + backward with ``train``)
    under autocast to ``dtype`` (``None``: float32)."""
    device = torch.device(device)
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(CEILING_SHAPE, generator=generator).to(device)
    channels = CEILING_SHAPE[1]
    weight = (torch.randn(channels, channels, 3, 3, generator=generator) * 0.02).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
        weight = weight.contiguous(memory_format=torch.channels_last)
    weight.requires_grad_(train)
    x.requires_grad_(train)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    def forward() -> None:
        with torch.no_grad(), autocast:
            F.conv2d(x, weight, padding=1)

    def step() -> None:
        with autocast:
            out = F.conv2d(x, weight, padding=1)
        out.backward(torch.ones_like(out))

    seconds = median(time_interleaved({"conv": step if train else forward}, repeats=repeats, device=device)["conv"])
    multiply_adds = x.shape[0] * channels * channels * 9 * x.shape[2] * x.shape[3]
    flops = 2 * multiply_adds * (3 if train else 1)
    return flops / seconds / 1e9
