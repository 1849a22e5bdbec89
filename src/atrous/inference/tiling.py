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

from collections.abc import Callable

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
    _, scores = tiled_predict(model, images, tile=tile, overlap=overlap, batch_size=batch_size, keep_scores=True)
    assert scores is not None
    return scores


@torch.no_grad()
def tiled_predict(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    tile: int,
    overlap: float = 0.25,
    batch_size: int = 4,
    keep_scores: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Labels (B, H, W) and, with ``keep_scores``, the blended scores (B, classes, H, W).

    ``fn`` maps a batch of windows to per-pixel class scores (a model's logits, or
    test-time-augmented probabilities). Without ``keep_scores`` memory stays bounded by
    the tile: sliding windows are blended one row of tiles at a time and every finished
    band of rows is reduced to labels at once, so an 8000×6000 image never holds its full
    score map.
    """
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise ValueError(f"tile must be a positive integer, got {tile!r}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap!r}")
    if isinstance(fn, nn.Module) and getattr(fn, "context", 0) > 0 and hasattr(fn, "forward_valid"):
        return _overlap_tile(fn, images, tile, batch_size, keep_scores)
    return _sliding_window(fn, images, tile, overlap, batch_size, keep_scores)


def _label_dtype(num_classes: int) -> torch.dtype:
    return torch.uint8 if num_classes <= 256 else torch.int64


def _overlap_tile(
    model: nn.Module, images: torch.Tensor, tile: int, batch_size: int, keep_scores: bool
) -> tuple[torch.Tensor, torch.Tensor | None]:
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
    labels: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    for start in range(0, len(origins), per_call):
        chunk = origins[start : start + per_call]
        windows = torch.cat([padded[..., y : y + window, x : x + window] for y, x in chunk])
        logits = model.forward_valid(windows).float()  # type: ignore[attr-defined]
        if labels is None:
            labels = torch.empty(b, covered_h, covered_w, dtype=_label_dtype(logits.shape[1]), device=images.device)
            if keep_scores:
                scores = logits.new_empty(b, logits.shape[1], covered_h, covered_w)
        for i, (y, x) in enumerate(chunk):
            part = logits[i * b : (i + 1) * b]
            labels[..., y : y + tile, x : x + tile] = part.argmax(1).to(labels.dtype)
            if scores is not None:
                scores[..., y : y + tile, x : x + tile] = part
    assert labels is not None
    return labels[..., :h, :w], None if scores is None else scores[..., :h, :w]


def _sliding_window(
    fn: Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    tile: int,
    overlap: float,
    batch_size: int,
    keep_scores: bool,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    b, _, h, w = images.shape
    x = mirror_pad(images, 0, max(0, tile - h), 0, max(0, tile - w))  # a small image fills one window
    ph, pw = x.shape[-2:]
    win_h, win_w = min(tile, ph), min(tile, pw)
    step = max(1, round(tile * (1.0 - overlap)))
    ys, xs = _starts(ph, win_h, step), _starts(pw, win_w, step)
    weight = _ramp(win_h, images.device)[:, None] * _ramp(win_w, images.device)[None, :]
    per_call = max(1, batch_size // b)
    labels: torch.Tensor | None = None
    scores: torch.Tensor | None = None
    # A band of win_h rows starting at `top`, accumulating the current row of tiles.
    acc: torch.Tensor | None = None
    norm = torch.zeros(win_h, pw, device=images.device)
    top = 0

    def finish(rows: int) -> None:
        """Reduce the band's first ``rows`` rows (no later tile reaches them) to labels."""
        nonlocal labels, scores
        assert acc is not None
        band = acc[:, :, :rows] / norm[:rows]
        if labels is None:
            labels = torch.empty(b, ph, pw, dtype=_label_dtype(band.shape[1]), device=images.device)
            if keep_scores:
                scores = band.new_empty(b, band.shape[1], ph, pw)
        labels[:, top : top + rows] = band.argmax(1).to(labels.dtype)
        if scores is not None:
            scores[:, :, top : top + rows] = band

    for y in ys:
        if acc is not None and y > top:
            shift = y - top
            finish(shift)
            acc = torch.cat([acc[:, :, shift:], torch.zeros_like(acc[:, :, :shift])], dim=2)
            norm = torch.cat([norm[shift:], torch.zeros_like(norm[:shift])])
            top = y
        for start in range(0, len(xs), per_call):
            chunk = xs[start : start + per_call]
            windows = torch.cat([x[..., y : y + win_h, xx : xx + win_w] for xx in chunk])
            out = fn(windows).float()
            if acc is None:
                acc = out.new_zeros(b, out.shape[1], win_h, pw)
            for i, xx in enumerate(chunk):
                acc[..., xx : xx + win_w] += out[i * b : (i + 1) * b] * weight
                norm[:, xx : xx + win_w] += weight
    finish(min(win_h, ph - top))
    assert labels is not None
    return labels[..., :h, :w], None if scores is None else scores[..., :h, :w]
