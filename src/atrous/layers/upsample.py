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
from torch.fx.experimental.symbolic_shapes import statically_known_true

from .padding import crop

ALIGN_CORNERS = False

UpsampleMode = Literal["nearest", "bilinear", "transposed"]


def resize(
    x: torch.Tensor,
    size: Sequence[int],
    mode: Literal["nearest", "bilinear"] = "bilinear",
    *,
    antialias: bool = False,
) -> torch.Tensor:
    """Resize a (B, C, H, W) tensor to ``size`` = (H', W').

    Bilinear uses the house ``align_corners`` setting; nearest takes none. ``antialias``
    (bilinear only) low-pass filters when shrinking, as the training augmentation's
    resize does (:class:`~atrous.data.transforms.RandomScale`); it changes nothing when
    enlarging.

    ``size`` may hold symbolic sizes (``torch.export`` with dynamic height and width):
    they are kept symbolic, and the same-size shortcut is taken only when it holds for
    every input size, so exporting adds no guard on the input's shape.
    """
    size = tuple(s if isinstance(s, torch.SymInt) else int(s) for s in (size[0], size[1]))
    if statically_known_true(x.shape[-2] == size[0]) and statically_known_true(x.shape[-1] == size[1]):
        return x  # interpolating to the same size is the identity; skip the copy
    if mode == "bilinear":
        return F.interpolate(x, size=size, mode="bilinear", align_corners=ALIGN_CORNERS, antialias=antialias)
    if antialias:
        raise ValueError("resize: antialias applies to bilinear resizing only")
    if mode == "nearest":
        return F.interpolate(x, size=size, mode="nearest")
    raise ValueError(f"resize: mode must be 'nearest' or 'bilinear', got {mode!r}")


class Upsample(nn.Module):
    """Upsample by an integer factor, fixed (nearest, bilinear) or learned, then crop.

    ``transposed`` is FCN's learned upsampling (Long et al. 2015, §3.3: "upsampling is
    backwards strided convolution"): a per-channel ``ConvTranspose2d`` with kernel
    2·factor and stride ``factor``, initialised to bilinear interpolation as the paper
    does. Its input is first padded by one cell with edge values, so that the untrained
    layer equals ``F.interpolate(scale_factor=factor, mode="bilinear",
    align_corners=False)`` everywhere, borders included (a transposed convolution over
    zero padding would darken the outermost factor/2 pixels).

    Every mode produces exactly factor × the input, in which cell *j* covers output
    pixels ``[factor·j, factor·(j + 1))``, and ``forward(x, size)`` crops that to
    ``size``. This is the geometry of maps pooled with ``ceil_mode`` (Caffe's pooling,
    which FCN used), so scores land on their pixels for any input size; cropping, not
    resizing to ``size``, keeps the scale exact.

    Args:
        channels: channels of the map (transposed mode).
        factor: integer upsampling factor; even for ``transposed``.
        mode: ``nearest``, ``bilinear`` or ``transposed``.
        learnable: for ``transposed``, whether the kernel trains (FCN §4.2 learns its
            2× layers from the bilinear start).
    """

    def __init__(self, channels: int, factor: int, *, mode: UpsampleMode = "bilinear", learnable: bool = True) -> None:
        super().__init__()
        if isinstance(factor, bool) or not isinstance(factor, int) or factor < 1:
            raise ValueError(f"Upsample: factor must be an integer >= 1, got {factor!r}")
        if mode not in ("nearest", "bilinear", "transposed"):
            raise ValueError(f"Upsample: mode must be nearest, bilinear or transposed, got {mode!r}")
        if mode == "transposed" and factor % 2:
            raise ValueError(
                f"Upsample: a transposed (bilinear-initialised) upsampling needs an even factor, got {factor}"
            )
        self.factor = factor
        self.mode = mode
        self.deconv: nn.ConvTranspose2d | None = None
        if mode == "transposed":
            kernel = 2 * factor
            # padding: factor/2 centres the kernel on the bilinear sampling grid; + factor
            # removes the cell of edge padding added in forward.
            self.deconv = nn.ConvTranspose2d(
                channels, channels, kernel, stride=factor, padding=factor // 2 + factor, groups=channels, bias=False
            )
            with torch.no_grad():
                self.deconv.weight.copy_(bilinear_kernel(kernel).expand_as(self.deconv.weight))
            self.deconv.weight.requires_grad_(learnable)

    def forward(self, x: torch.Tensor, size: Sequence[int] | None = None) -> torch.Tensor:
        full = (x.shape[-2] * self.factor, x.shape[-1] * self.factor)
        if size is None:
            size = full
        if size[0] > full[0] or size[1] > full[1]:
            raise ValueError(
                f"Upsample: a {tuple(x.shape[-2:])} map ×{self.factor} gives {full}, smaller than the "
                f"requested {tuple(size)}; pool with ceil_mode so maps cover the input"
            )
        if self.deconv is not None:
            y = self.deconv(F.pad(x, (1, 1, 1, 1), mode="replicate"))
        elif self.mode == "bilinear":
            y = F.interpolate(x, scale_factor=self.factor, mode="bilinear", align_corners=ALIGN_CORNERS)
        else:
            y = F.interpolate(x, scale_factor=self.factor, mode="nearest")
        return crop(y, size[0], size[1])

    def extra_repr(self) -> str:
        return f"factor={self.factor}, mode={self.mode!r}"


def bilinear_kernel(size: int) -> torch.Tensor:
    """A (size, size) bilinear interpolation kernel, as FCN initialises its deconvolutions."""
    factor = (size + 1) // 2
    center = factor - 1 if size % 2 == 1 else factor - 0.5
    coords = torch.arange(size, dtype=torch.float32)
    filt = 1 - (coords - center).abs() / factor
    return filt[:, None] * filt[None, :]
