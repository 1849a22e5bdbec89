"""Mirror padding of any width: the overlap-tile strategy's border extrapolation."""

from __future__ import annotations

import torch
from torch.fx.experimental.symbolic_shapes import statically_known_true


def _mirror_indices(n: int, before: int, after: int, device: torch.device) -> torch.Tensor:
    """Source index of every padded position: reflection about the first and last pixel,
    repeated with period 2·(n − 1) for pads wider than the image (a size-1 axis replicates).

    Branch-free, so that it traces with symbolic sizes (``torch.export``): for n = 1 the
    period is 1 and every index becomes 0.
    """
    index = torch.arange(-before, n + after, device=device)
    period = torch.sym_max(2 * (n - 1), 1)
    index = index.remainder(index.new_full((), period))  # a tensor divisor: exports with symbolic sizes
    return torch.where(index >= n, period - index, index)


def mirror_pad(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """Pad a (…, H, W) tensor by mirroring at its borders (U-Net §2, Fig. 2: "the missing
    context is extrapolated by mirroring the input image").

    Equal to ``F.pad(mode="reflect")`` (and NumPy's ``"reflect"``) where that applies, but
    any width works: ``F.pad`` cannot pad by the image's size or more, and the original
    U-Net needs a 92-pixel margin around images of any size.
    """
    if any(pad < 0 for pad in (top, bottom, left, right)):  # no min(): it would branch on symbolic sizes
        raise ValueError(f"mirror_pad: padding must be >= 0, got {(top, bottom, left, right)}")
    h, w = x.shape[-2:]
    # A side is skipped only when its padding is zero for every input size: with symbolic
    # sizes (``torch.export``) a pad that happens to be 0 for the example must stay a pad.
    if not (statically_known_true(top == 0) and statically_known_true(bottom == 0)):
        x = x.index_select(-2, _mirror_indices(h, top, bottom, x.device))
    if not (statically_known_true(left == 0) and statically_known_true(right == 0)):
        x = x.index_select(-1, _mirror_indices(w, left, right, x.device))
    return x


def crop(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x[..., :height, :width]``, the top-left corner of a (…, H, W) tensor.

    With concrete sizes this is the slice (a view). With symbolic sizes (``torch.export``
    with dynamic height and width) the corner is gathered into a new tensor instead:
    tracing a view makes PyTorch ask whether it is contiguous, i.e. whether the crop is
    the whole width, which would tie the exported graph to the example's size.
    """
    h, w = x.shape[-2:]
    if not any(isinstance(s, torch.SymInt) for s in (h, w, height, width)):
        return x[..., :height, :width]
    if not statically_known_true(h == height):
        x = x.index_select(-2, torch.arange(height, device=x.device))
    if not statically_known_true(w == width):
        x = x.index_select(-1, torch.arange(width, device=x.device))
    return x
