"""Mirror padding of any width: the overlap-tile strategy's border extrapolation."""

from __future__ import annotations

import torch


def _mirror_indices(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Source index of every padded position: reflection about the first and last pixel,
    repeated with period 2·(n − 1) for pads wider than the image (a size-1 axis replicates)."""
    index = torch.arange(-before, n + after, device=device)
    if n == 1:
        return torch.zeros_like(index)
    period = 2 * (n - 1)
    index = index.remainder(period)
    return torch.where(index >= n, period - index, index)


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Pad a (…, H, W) tensor by mirroring at its borders (U-Net §2, Fig. 2: "the missing
    context is extrapolated by mirroring the input image").

    Equal to ``F.pad(mode="reflect")`` (and NumPy's ``"reflect"``) where that applies, but
    any width works: ``F.pad`` cannot pad by the image's size or more, and the original
    U-Net needs a 92-pixel margin around images of any size.
    """
    if min(top, bottom, left, right) < 0:
        raise ValueError(f"mirror_pad: padding must be >= 0, got {(top, bottom, left, right)}")
    h, w = x.shape[-2:]
    if top or bottom:
        x = x.index_select(-2, _mirror_indices(h, top, bottom, x.device))
    if left or right:
        x = x.index_select(-1, _mirror_indices(w, left, right, x.device))
    return x
