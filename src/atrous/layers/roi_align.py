"""RoIAlign and RoIPool in plain tensor operations: pooling a fixed-size feature per box.

Mask R-CNN (He et al. 2017, §3 "RoIAlign") replaces Fast R-CNN's RoIPool because RoIPool
quantises twice — the box to the feature map's integer grid (``[x/16]`` on a stride-16
map) and each of the box's bins to integer rows and columns — which "introduce[s]
misalignments between the RoI and the extracted features". That barely hurts
classification but hurts pixel-accurate masks. RoIAlign avoids "any quantization of the
RoI boundaries or bins (i.e., we use x/16 instead of [x/16])": it samples the feature
map by bilinear interpolation at regularly spaced points in every bin (2×2 in the
paper, or ``ceil(bin size)`` per axis when ``sampling_ratio <= 0``) and averages them.

Both functions follow ``torchvision.ops.roi_align`` / ``roi_pool`` exactly, border rules
included, and are checked against them in ``tests/layers/test_roi_align.py``. They are
written to be read: the bilinear weights of each sample point are built per axis (they
are separable, and hold no channels), and one gather per neighbour fetches the feature
vectors, so there is no Python loop over boxes or sample points. Autograd gives the
gradient with respect to the feature map; like torchvision, none flows to the boxes
(Faster R-CNN §3.2, "approximate joint training", treats proposals as constants).

The pixel convention: ``aligned=True`` (the default here; Detectron2's "ROIAlignV2")
shifts box coordinates by −½ pixel, so that feature pixel *j* — covering image
coordinates ``[s·j, s·(j + 1))`` at stride *s* — is sampled at its centre. The paper's
code and torchvision's default (``aligned=False``, which ``torchvision.models.detection``
uses) place pixel *j* at ``s·j``; weights trained that way need ``aligned=False``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

Boxes = torch.Tensor | Sequence[torch.Tensor]


def _pair(size: int | Sequence[int], op: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(size)
    if len(pair) != 2 or not all(isinstance(s, int) and s > 0 for s in pair):
        raise ValueError(f"{op}: output_size must be a positive int or (height, width), got {size!r}")
    return pair


def _coord_dtype(input: torch.Tensor) -> torch.dtype:
    return torch.promote_types(input.dtype, torch.float32)


def _as_rois(input: torch.Tensor, boxes: Boxes, op: str) -> torch.Tensor:
    """Boxes as one detached (K, 5) tensor of (batch index, x1, y1, x2, y2), checked; a list
    holds one (L_i, 4) tensor per image, as in torchvision. The dtype is the input's, but at
    least float32: box coordinates of a few hundred pixels are off by whole pixels in half
    precision."""
    if input.dim() != 4:
        raise ValueError(f"{op}: input must be (N, C, H, W), got shape {tuple(input.shape)}")
    if not input.is_floating_point():
        raise TypeError(f"{op}: input must be floating point, got {input.dtype}")
    if isinstance(boxes, torch.Tensor):
        if boxes.dim() != 2 or boxes.shape[1] != 5:
            raise ValueError(
                f"{op}: boxes must be a Tensor[K, 5] of (batch index, x1, y1, x2, y2) or a list of "
                f"Tensor[L, 4], got a tensor of shape {tuple(boxes.shape)}"
            )
        rois = boxes
    elif isinstance(boxes, (list, tuple)):
        for i, b in enumerate(boxes):
            if not isinstance(b, torch.Tensor) or b.dim() != 2 or b.shape[1] != 4:
                shape = tuple(b.shape) if isinstance(b, torch.Tensor) else type(b).__name__
                raise ValueError(f"{op}: boxes[{i}] must be a Tensor[L, 4] of (x1, y1, x2, y2), got {shape}")
        if not boxes:
            return input.new_zeros(0, 5, dtype=_coord_dtype(input))
        index = torch.cat([torch.full_like(b[:, :1], i) for i, b in enumerate(boxes)])
        rois = torch.cat([index, torch.cat(list(boxes))], dim=1)
    else:
        raise TypeError(f"{op}: boxes must be a Tensor[K, 5] or a list of Tensor[L, 4], got {type(boxes).__name__}")
    rois = rois.detach().to(_coord_dtype(input))
    if len(rois):
        batch = rois[:, 0].long()
        if batch.min() < 0 or batch.max() >= len(input):
            raise ValueError(f"{op}: box batch indices must lie in [0, {len(input)}), got {batch.unique().tolist()}")
    return rois


def _bilinear_taps(coord: torch.Tensor, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The two neighbouring indices of each sample coordinate along an axis of ``size``
    pixels, and their linear-interpolation weights, stacked on a new last axis.

    torchvision's border rules: a point more than one pixel outside the map (coordinate
    < −1 or > size) has weight 0; otherwise the coordinate is clamped to [0, size − 1],
    so a point within a pixel of the border reads the border pixel.
    """
    inside = (coord >= -1) & (coord <= size)
    coord = coord.clamp(0, size)  # the upper clamp only keeps far-away (zero-weight) points in int range
    low = coord.long().clamp(max=size - 1)  # coord >= 0: truncation is floor
    at_edge = coord >= size - 1
    high = torch.where(at_edge, low, low + 1)
    frac = torch.where(at_edge, 0, coord - low)
    weights = torch.stack([1 - frac, frac], dim=-1) * inside[..., None]
    return torch.stack([low, high], dim=-1), weights


def _sample_points(start: torch.Tensor, bin_size: torch.Tensor, bins: int, grid: int) -> torch.Tensor:
    """(K, bins, grid) coordinates along one axis: ``grid`` evenly spaced points in each bin,
    at the centres of ``grid`` equal sub-cells (start + p·bin + (i + ½)·bin / grid)."""
    p = torch.arange(bins, dtype=start.dtype, device=start.device)[None, :, None]
    i = torch.arange(grid, dtype=start.dtype, device=start.device) + 0.5
    start, bin_size = start[:, None, None], bin_size[:, None, None]
    return start + p * bin_size + i * bin_size / grid


def _align(feats: torch.Tensor, batch: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Average of bilinear samples: ``feats`` is (N, H, W, C); ``y`` is (K, out_h, Gy) and
    ``x`` (K, out_w, Gx) are the sample coordinates of each bin; returns (K, C, out_h, out_w).

    Bilinear interpolation is separable: the sample at (y, x) is the sum over its four
    neighbours (a, b) of wy_a · wx_b · f[y_a, x_b]. Each neighbour is one gather of channel
    vectors, (K, out_h, out_w, Gy, Gx, C), which one batched matrix product weights and sums
    over the bin's Gy·Gx samples.
    """
    rows, wy = _bilinear_taps(y, feats.shape[1])  # (K, out_h, Gy, 2)
    cols, wx = _bilinear_taps(x, feats.shape[2])  # (K, out_w, Gx, 2)
    rows, wy = rows[:, :, None, :, None], wy[:, :, None, :, None]  # (K, out_h, 1, Gy, 1, 2)
    cols, wx = cols[:, None, :, None, :], wx[:, None, :, None, :]  # (K, 1, out_w, 1, Gx, 2)
    image = batch[:, None, None, None, None]
    out = 0
    for a in (0, 1):  # the four neighbours one at a time: the gather holds one vector per sample
        for b in (0, 1):
            taps = feats[image, rows[..., a], cols[..., b]].flatten(3, 4)  # (K, out_h, out_w, Gy·Gx, C)
            weights = (wy[..., a] * wx[..., b]).flatten(3, 4)  # (K, out_h, out_w, Gy·Gx)
            out = out + (weights[..., None, :] @ taps).squeeze(-2)
    return (out / (y.shape[2] * x.shape[2])).permute(0, 3, 1, 2).contiguous()


def roi_align(
    input: torch.Tensor,
    boxes: Boxes,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
    sampling_ratio: int = -1,
    aligned: bool = True,
) -> torch.Tensor:
    """RoIAlign (Mask R-CNN §3): pool each box of ``input`` (N, C, H, W) to
    (K, C, out_h, out_w) without quantisation, as ``torchvision.ops.roi_align`` does.

    ``boxes`` is a Tensor[K, 5] of (batch index, x1, y1, x2, y2) or a list of Tensor[L_i, 4],
    one per image, in image coordinates; ``spatial_scale`` maps them onto the feature map
    (1/16 for a stride-16 map). Each bin averages ``sampling_ratio``² bilinear samples, or,
    when ``sampling_ratio <= 0``, ``ceil(box height / out_h) × ceil(box width / out_w)``
    of them (adaptive, per box and per axis). ``aligned`` shifts the box by −½ pixel (see
    the module docstring); without it, boxes are at least one pixel wide and high.
    """
    op = "roi_align"
    out_h, out_w = _pair(output_size, op)
    rois = _as_rois(input, boxes, op)
    if rois.dtype != input.dtype:  # half precision: sample in float32, as torchvision does under autocast
        out = roi_align(input.to(rois.dtype), rois, output_size, spatial_scale, sampling_ratio, aligned)
        return out.to(input.dtype)
    batch, channels = rois[:, 0].long(), input.shape[1]
    offset = 0.5 if aligned else 0.0
    x1, y1, x2, y2 = (rois[:, 1:] * spatial_scale - offset).unbind(1)
    roi_w, roi_h = x2 - x1, y2 - y1
    if not aligned:  # the legacy rule: a box is never smaller than one pixel
        roi_w, roi_h = roi_w.clamp(min=1), roi_h.clamp(min=1)
    bin_h, bin_w = roi_h / out_h, roi_w / out_w
    feats = input.permute(0, 2, 3, 1)  # (N, H, W, C): one gather reads a pixel's channel vector

    def pool(members: torch.Tensor | slice, grid_h: int, grid_w: int) -> torch.Tensor:
        y = _sample_points(y1[members], bin_h[members], out_h, grid_h)
        x = _sample_points(x1[members], bin_w[members], out_w, grid_w)
        return _align(feats, batch[members], y, x)

    if sampling_ratio > 0:
        return pool(slice(None), sampling_ratio, sampling_ratio)
    # Adaptive: the sample grid depends on each box's size, so boxes are pooled in groups
    # that share a grid. A box with no extent (grid ≤ 0 on an axis) has no samples: zeros.
    grid = torch.stack([(roi_h / out_h).ceil(), (roi_w / out_w).ceil()], dim=1).long()
    out = input.new_zeros(len(rois), channels, out_h, out_w)
    for grid_h, grid_w in torch.unique(grid, dim=0).tolist():
        if grid_h > 0 and grid_w > 0:
            members = (grid == grid.new_tensor([grid_h, grid_w])).all(dim=1).nonzero().squeeze(1)
            out = out.index_copy(0, members, pool(members, grid_h, grid_w))
    return out


def _round_half_away(v: torch.Tensor) -> torch.Tensor:
    """C's ``round``: halves go away from zero (``torch.round`` rounds them to even)."""
    return torch.where((v - v.trunc()).abs() == 0.5, v.trunc() + v.sign(), v.round())


def roi_pool(
    input: torch.Tensor,
    boxes: Boxes,
    output_size: int | Sequence[int],
    spatial_scale: float = 1.0,
) -> torch.Tensor:
    """RoIPool (Fast R-CNN §2.1), the quantised baseline of Mask R-CNN §3, as
    ``torchvision.ops.roi_pool`` computes it: the box is rounded to whole feature pixels
    (an inclusive range, at least 1×1), bin *p* of an axis covers pixels
    ``[floor(p·bin), ceil((p + 1)·bin))`` of it, clipped to the map, and each bin takes
    its maximum (0 for a bin left empty by the clipping).
    """
    op = "roi_pool"
    out_h, out_w = _pair(output_size, op)
    rois = _as_rois(input, boxes, op)
    batch, (height, width) = rois[:, 0].long(), input.shape[-2:]
    x1, y1, x2, y2 = _round_half_away(rois[:, 1:] * spatial_scale).long().unbind(1)

    def windows(start: torch.Tensor, end: torch.Tensor, bins: int, size: int):
        """Each bin's pixel indices along an axis, (K, bins, B) for the widest bin's B (a
        narrower bin repeats its last pixel, which leaves a maximum unchanged), and whether
        the bin is empty (K, bins)."""
        length = (end - start + 1).clamp(min=1)
        bin_size = length.to(rois.dtype)[:, None] / bins
        p = torch.arange(bins, dtype=rois.dtype, device=input.device)
        lo = ((p * bin_size).floor().long() + start[:, None]).clamp(0, size)
        hi = (((p + 1) * bin_size).ceil().long() + start[:, None]).clamp(0, size)
        widest = int((hi - lo).max()) if lo.numel() else 1
        index = torch.minimum(lo[..., None] + torch.arange(max(widest, 1), device=input.device), hi[..., None] - 1)
        return index.clamp(0, size - 1), hi <= lo

    rows, no_rows = windows(y1, y2, out_h, height)  # (K, out_h, Bh)
    cols, no_cols = windows(x1, x2, out_w, width)  # (K, out_w, Bw)
    feats = input.permute(0, 2, 3, 1)  # (N, H, W, C)
    image = batch[:, None, None, None, None]
    values = feats[image, rows[:, :, None, :, None], cols[:, None, :, None, :]]  # (K, out_h, out_w, Bh, Bw, C)
    pooled = values.flatten(3, 4).max(dim=3).values  # max, not amax: the gradient goes to one pixel
    empty = no_rows[:, :, None] | no_cols[:, None, :]
    return pooled.masked_fill(empty[..., None], 0).permute(0, 3, 1, 2).contiguous()


class RoIAlign(nn.Module):
    """:func:`roi_align` as a module (Mask R-CNN §3)."""

    def __init__(
        self,
        output_size: int | Sequence[int],
        spatial_scale: float = 1.0,
        sampling_ratio: int = -1,
        aligned: bool = True,
    ) -> None:
        super().__init__()
        self.output_size = _pair(output_size, type(self).__name__)
        self.spatial_scale = spatial_scale
        self.sampling_ratio = sampling_ratio
        self.aligned = aligned

    def forward(self, input: torch.Tensor, boxes: Boxes) -> torch.Tensor:
        return roi_align(input, boxes, self.output_size, self.spatial_scale, self.sampling_ratio, self.aligned)

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale}, "
            f"sampling_ratio={self.sampling_ratio}, aligned={self.aligned})"
        )


class RoIPool(nn.Module):
    """:func:`roi_pool` as a module (Fast R-CNN §2.1)."""

    def __init__(self, output_size: int | Sequence[int], spatial_scale: float = 1.0) -> None:
        super().__init__()
        self.output_size = _pair(output_size, type(self).__name__)
        self.spatial_scale = spatial_scale

    def forward(self, input: torch.Tensor, boxes: Boxes) -> torch.Tensor:
        return roi_pool(input, boxes, self.output_size, self.spatial_scale)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(output_size={self.output_size}, spatial_scale={self.spatial_scale})"
