"""How well a prediction follows outlines: boundary IoU and trimap accuracy.

Mask IoU is dominated by an object's interior, which grows with its area while the
boundary grows with its perimeter, so a large object's outline can be poor at a high
IoU. Two measures look at the outline alone.

**Boundary IoU** (Cheng et al., CVPR 2021, "Boundary IoU: Improving Object-Centric Image
Segmentation Evaluation", as their boundary-iou-api and detectron2 compute it). The
boundary region of a binary mask ``M`` is ``M_d = M − erode(M, d)``: the pixels of ``M``
within ``d`` pixels of a pixel outside it, the image border counting as outside. ``d`` is
``dilation_ratio × image diagonal``, rounded, at least 1 (ratio 0.02, the paper's choice).
Per class, over the dataset, ``Σ|G_d ∩ P_d| / Σ|G_d ∪ P_d|`` with ``G_d``, ``P_d`` the
boundary regions of the ground-truth and predicted masks of the class, the sums over images
and over the pixels whose ground truth is not ignored (an ignored pixel is outside the
ground-truth mask, so ignored borders do make ground-truth boundaries).

**Trimap accuracy** (Kohli et al. 2009, "Robust Higher Order Potentials for Enforcing
Label Consistency", who score the band's pixel error — this is its complement; DeepLab v1,
Chen et al. ICLR 2015, scores the same band, its "trimap", with mean IoU): pixel accuracy
restricted to a band around the ground-truth label boundaries. A pixel lies in the band of width ``d`` when the
``(2d + 1) × (2d + 1)`` square centred on it (clipped at the image border) holds more than
one ground-truth label, the ignore label counting as a label — so the band follows void
boundaries too (VOC marks every object outline void) — and ignored pixels in it are not
scored. A straight edge gets a band ``2d`` pixels wide, ``d`` on each side.

Neither scipy.ndimage nor max-pooling: both the erosion and the band are **box sums over
integral images** (torch cumulative sums), which cost the same few operations per pixel
whatever ``d`` is — a 25×25 window on every class of every image made max-pools the
slowest part of a CPU report — and run where the labels are, GPU or CPU. A pixel survives
the erosion when the ``(2d+1)²`` square around it, padded with zeros outside the image,
sums to ``(2d+1)²``; it is in the band when its square (clipped at the border) contains a
pair of side-by-side pixels with different labels (a square holding two labels always
contains such a pair: walk from one to the other inside it). The tests compare both with
the reference definitions written out literally: boundary-iou-api's ``d`` iterations of a
3×3 erosion after one pixel of zero padding, and a loop over every pixel's window.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.constants import IGNORE_INDEX

DILATION_RATIO = 0.02
TRIMAP_WIDTHS = (1, 2, 4, 8, 16)


def boundary_distance(height: int, width: int, dilation_ratio: float = DILATION_RATIO) -> int:
    """``d`` of an image: ``dilation_ratio × diagonal``, rounded (as Python rounds), at least 1."""
    return max(1, round(dilation_ratio * math.hypot(height, width)))


def box_sum(x: torch.Tensor, top: int, bottom: int, left: int, right: int) -> torch.Tensor:
    """``out[y, x] = Σ x[y + i, x + j]`` for ``-top ≤ i ≤ bottom``, ``-left ≤ j ≤ right`` over (N, H, W),
    terms outside the image counting 0: four lookups in an integral image per pixel."""
    _, height, width = x.shape
    padded = F.pad(x.to(torch.int32), (left + 1, right, top + 1, bottom))  # one more zero row/column first
    integral = padded.cumsum(dim=1, dtype=torch.int32).cumsum(dim=2, dtype=torch.int32)
    h, w = top + bottom + 1, left + right + 1
    return (
        integral[:, h : h + height, w : w + width]
        - integral[:, :height, w : w + width]
        - integral[:, h : h + height, :width]
        + integral[:, :height, :width]
    )


def erode(masks: torch.Tensor, d: int) -> torch.Tensor:
    """Binary erosion of (N, H, W) masks by the ``(2d+1)²`` square, outside the image = 0:
    a pixel survives when its whole square lies inside the mask."""
    return box_sum(masks.bool(), d, d, d, d) == (2 * d + 1) ** 2


def boundary_region(masks: torch.Tensor, d: int) -> torch.Tensor:
    """``M − erode(M, d)`` for boolean (N, H, W) masks."""
    masks = masks.bool()
    return masks & ~erode(masks, d)


def boundary_counts(
    pred: torch.Tensor,
    target: torch.Tensor,
    num_classes: int,
    *,
    ignore_index: int = IGNORE_INDEX,
    dilation_ratio: float = DILATION_RATIO,
) -> tuple[np.ndarray, np.ndarray]:
    """One image's ``|G_d ∩ P_d|`` and ``|G_d ∪ P_d|`` per class, int64 arrays (C,).

    Args:
        pred, target: (H, W) integer labels on one device; ``target`` pixels equal to
            ``ignore_index`` are not counted.
    """
    height, width = target.shape
    d = boundary_distance(height, width, dilation_ratio)
    valid = target != ignore_index
    classes = torch.cat([target[valid].unique(), pred.unique()]).unique()
    classes = classes[(classes >= 0) & (classes < num_classes)]
    intersection = np.zeros(num_classes, dtype=np.int64)
    union = np.zeros(num_classes, dtype=np.int64)
    if classes.numel() == 0:
        return intersection, union
    truth = boundary_region(target.unsqueeze(0) == classes.view(-1, 1, 1), d)
    predicted = boundary_region(pred.unsqueeze(0) == classes.view(-1, 1, 1), d)
    index = classes.cpu().numpy()
    intersection[index] = (truth & predicted & valid).sum(dim=(1, 2)).cpu().numpy()
    union[index] = ((truth | predicted) & valid).sum(dim=(1, 2)).cpu().numpy()
    return intersection, union


def boundary_iou(intersection: np.ndarray, union: np.ndarray) -> np.ndarray:
    """Per-class boundary IoU from summed counts; NaN where the union is empty (a class in
    neither ground truth nor prediction), as mask IoU is."""
    intersection = np.asarray(intersection, dtype=np.float64)
    union = np.asarray(union, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, intersection / np.maximum(union, 1), np.nan)


def trimap_band(target: torch.Tensor, d: int) -> torch.Tensor:
    """Boolean (H, W): pixels whose ``(2d+1)²`` square (clipped) holds more than one label of
    ``target`` (the ignore label is a label here)."""
    labels = target.unsqueeze(0)
    # across[y, x]: pixels (y, x) and (y, x+1) differ; down[y, x]: (y, x) and (y+1, x) differ.
    across = F.pad(labels[:, :, 1:] != labels[:, :, :-1], (0, 1))
    down = F.pad(labels[:, 1:, :] != labels[:, :-1, :], (0, 0, 0, 1))
    # a pair lies in the square of p when both its pixels do: its first pixel is within d of
    # p, and not on the square's last column (across) or row (down)
    pairs = box_sum(across, d, d, d, d - 1) + box_sum(down, d, d - 1, d, d)
    return pairs[0] > 0


def trimap_counts(
    pred: torch.Tensor,
    target: torch.Tensor,
    widths: Sequence[int] = TRIMAP_WIDTHS,
    *,
    ignore_index: int = IGNORE_INDEX,
) -> tuple[np.ndarray, np.ndarray]:
    """One image's correctly labelled and scored pixels in the band of each width, int64 (W,)."""
    valid = target != ignore_index
    correct = pred == target
    hits, scored = [], []
    for d in widths:
        band = trimap_band(target, d) & valid
        hits.append(int((band & correct).sum()))
        scored.append(int(band.sum()))
    return np.array(hits, dtype=np.int64), np.array(scored, dtype=np.int64)
