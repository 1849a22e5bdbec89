"""Tiled inference: images larger than a model's comfortable input, predicted window by window.

Two strategies, chosen by the model:

* **Overlap-tile** (U-Net §2, Fig. 2) for networks with unpadded convolutions (a model with
  ``forward_valid`` and a positive ``context``): the image is mirror-padded by the context
  once, and output tiles of about ``tile`` × ``tile`` pixels are predicted from input
  windows that overlap by 2·context, so every output pixel sees its full context. Tile
  origins step by a multiple of 2^depth, which keeps every tile's poolings on the same
  grid as a single pass over the whole image: the tiled result equals the whole-image
  result, and memory is bounded by the tile.
* **Sliding window** for every other model: windows of ``tile`` × ``tile`` with ``overlap``
  between neighbours; logits are blended with weights that fall linearly towards each
  window's border (a pixel near a window edge has lost context), so seams do not show.
  An image smaller than a window is mirror-padded up to it and cropped back.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers.padding import mirror_pad


def _starts(length: int, window: int, step: int) -> list[int]:
    """Window origins covering [0, length): regular steps, the last flush with the end."""
    if length <= window:
        return [0]
    starts = list(range(0, length - window, step))
    starts.append(length - window)
    return starts


def _ramp(n: int, device: torch.device) -> torch.Tensor:
    """1 at the window's centre, falling linearly to a small positive value at its edges."""
    position = (torch.arange(n, device=device, dtype=torch.float32) + 0.5) / n
    return (1.0 - (2.0 * position - 1.0).abs()).clamp_min(1.0 / n)


@torch.no_grad()
def predict_tiled(
    model: nn.Module, images: torch.Tensor, *, tile: int, overlap: float = 0.25, batch_size: int = 4
) -> torch.Tensor:
    """Logits (B, classes, H, W) for ``images`` (B, C, H, W), computed ``tile`` by ``tile``.

    Args:
        model: a segmentation model returning logits at its input size.
        images: normalised float images.
        tile: output tile side in pixels (the window side for sliding windows).
        overlap: fraction of a window shared with its neighbour (sliding windows only).
        batch_size: windows run through the model at once.
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile!r}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    if getattr(model, "context", 0) > 0 and hasattr(model, "forward_valid"):
        return _overlap_tile(model, images, tile, batch_size)
    return _sliding_window(model, images, tile, overlap, batch_size)


def _overlap_tile(model: nn.Module, images: torch.Tensor, tile: int, batch_size: int) -> torch.Tensor:
    from ..models.unet import valid_output_size

    depth = model.depth  # type: ignore[attr-defined]
    grid = 2**depth
    tile = valid_output_size(max(tile, grid), depth)  # valid sizes are 4 mod 16 at depth 4
    step = tile // grid * grid  # a pooling-grid multiple: neighbours overlap by tile - step
    window = model.input_size_for(tile)  # type: ignore[attr-defined]
    context = model.context  # type: ignore[attr-defined]
    b, _, h, w = images.shape
    ys = [i * step for i in range(max(1, -(-(h - tile) // step) + 1))]
    xs = [i * step for i in range(max(1, -(-(w - tile) // step) + 1))]
    covered_h, covered_w = ys[-1] + tile, xs[-1] + tile
    padded = mirror_pad(images, context, covered_h - h + context, context, covered_w - w + context)
    origins = [(y, x) for y in ys for x in xs]
    per_call = max(1, batch_size // b)
    out: torch.Tensor | None = None
    for start in range(0, len(origins), per_call):
        chunk = origins[start : start + per_call]
        windows = torch.cat([padded[..., y : y + window, x : x + window] for y, x in chunk])
        logits = model.forward_valid(windows)  # type: ignore[attr-defined]
        if out is None:
            out = logits.new_zeros(b, logits.shape[1], covered_h, covered_w)
        for i, (y, x) in enumerate(chunk):
            out[..., y : y + tile, x : x + tile] = logits[i * b : (i + 1) * b]
    assert out is not None
    return out[..., :h, :w]


def _sliding_window(model: nn.Module, images: torch.Tensor, tile: int, overlap: float, batch_size: int) -> torch.Tensor:
    b, _, h, w = images.shape
    pad_h, pad_w = max(0, tile - h), max(0, tile - w)
    x = mirror_pad(images, 0, pad_h, 0, pad_w)
    ph, pw = x.shape[-2:]
    win_h, win_w = min(tile, ph), min(tile, pw)
    step = max(1, round(tile * (1.0 - overlap)))
    origins = [(y, xx) for y in _starts(ph, win_h, step) for xx in _starts(pw, win_w, step)]
    weight = _ramp(win_h, images.device)[:, None] * _ramp(win_w, images.device)[None, :]
    out: torch.Tensor | None = None
    norm = torch.zeros(ph, pw, device=images.device)
    per_call = max(1, batch_size // b)
    for start in range(0, len(origins), per_call):
        chunk = origins[start : start + per_call]
        windows = torch.cat([x[..., y : y + win_h, xx : xx + win_w] for y, xx in chunk])
        logits = model(windows).float()
        if out is None:
            out = logits.new_zeros(b, logits.shape[1], ph, pw)
        for i, (y, xx) in enumerate(chunk):
            out[..., y : y + win_h, xx : xx + win_w] += logits[i * b : (i + 1) * b] * weight
            norm[y : y + win_h, xx : xx + win_w] += weight
    assert out is not None
    return (out / norm)[..., :h, :w]
