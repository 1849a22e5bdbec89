"""Resizing feature maps and logits: the one place that decides ``align_corners``.

Every bilinear resize in atrous goes through :func:`resize`, so the choice of
``align_corners=False`` (the torchvision and PyTorch default, and what the torchvision
segmentation models use) is made once. DeepLab's original TensorFlow code used
``align_corners=True``; a preset that wants it must say so here, not at a call site.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

ALIGN_CORNERS = False

UpsampleMode = Literal["nearest", "bilinear", "transposed"]


def resize(x: torch.Tensor, size: Sequence[int], mode: Literal["nearest", "bilinear"] = "bilinear") -> torch.Tensor:
    """Resize a (B, C, H, W) tensor to ``size`` = (H', W').

    Bilinear uses the house ``align_corners`` setting; nearest takes none.
    """
    size = (int(size[0]), int(size[1]))
    if mode == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=ALIGN_CORNERS)
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    raise ValueError(f"resize: mode must be 'nearest' or 'bilinear', got {mode!r}")


class Upsample(nn.Module):
    """Upsample by an integer factor, fixed (nearest, bilinear) or learned.

    ``transposed`` is FCN's learned upsampling (Long et al. 2015, §3.3: "upsampling is
    backwards strided convolution"): a ``ConvTranspose2d`` with kernel 2·factor and
    stride ``factor``, initialised to bilinear interpolation as the paper does, applied
    per channel (groups = channels) unless ``learnable_mixing`` is asked for.

    ``forward(x, size)`` takes the exact output size so that odd input sizes round-trip;
    the learned variant crops its (slightly larger) output to it.
    """

    def __init__(self, channels: int, factor: int, *, mode: UpsampleMode = "bilinear") -> None:
        super().__init__()
        if factor < 1:
            raise ValueError(f"Upsample: factor must be >= 1, got {factor}")
        if mode not in ("nearest", "bilinear", "transposed"):
            raise ValueError(f"Upsample: mode must be nearest, bilinear or transposed, got {mode!r}")
        self.factor = factor
        self.mode = mode
        self.deconv: nn.ConvTranspose2d | None = None
        if mode == "transposed":
            kernel = 2 * factor
            self.deconv = nn.ConvTranspose2d(
                channels, channels, kernel, stride=factor, padding=factor // 2, groups=channels, bias=False
            )
            with torch.no_grad():
                self.deconv.weight.copy_(bilinear_kernel(kernel).expand_as(self.deconv.weight))

    def forward(self, x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        if size is None:
            size = (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
        if self.deconv is None:
            return resize(x, size, mode=self.mode)  # type: ignore[arg-type]
        y = self.deconv(x)
        if y.shape[-2] < size[0] or y.shape[-1] < size[1]:
            # Asked for more than factor× (a caller rounding up): finish with bilinear.
            return resize(y, size)
        return y[..., : size[0], : size[1]]


def bilinear_kernel(size: int) -> torch.Tensor:
    """A (size, size) bilinear interpolation kernel, as FCN initialises its deconvolutions."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    coords = torch.arange(size, dtype=torch.float32)
    filt = 1 - (coords - center).abs() / factor
    return filt[:, None] * filt[None, :]
