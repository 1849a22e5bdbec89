"""Confidence intervals for mIoU and per-class IoU by the bootstrap over images (Efron 1979,
"Bootstrap Methods: Another Look at the Jackknife"; the percentile interval of Efron &
Tibshirani 1993, "An Introduction to the Bootstrap", chapter 13).

An evaluation set is a sample of images; another sample of the same size would give
another mIoU. The bootstrap estimates that spread from the set itself: keep one C×C
confusion matrix per image (int64), draw ``B`` resamples of ``N`` image indices with
replacement from ``numpy.random.default_rng(seed)`` (one ``(B, N)`` draw of
``rng.integers(0, N)``), sum the matrices of each resample into one dataset-level matrix,
compute the metric from it exactly as :class:`~atrous.metrics.ConfusionMatrix` does
(IoU ``n_ii / (t_i + Σ_j n_ji − n_ii)``, mIoU over the classes present in ground truth or
prediction), and take the 2.5th and 97.5th percentiles of the ``B`` values (numpy's
default, linear interpolation) as the 95 % interval. Images are the unit resampled, so
pixels of one image — which are far from independent — move together.

A class absent from a resample (no ground truth, no prediction) has no IoU there: it is
left out of that resample's mIoU, and its own interval is taken over the resamples where
it is defined.

**Paired differences.** Two settings (models, scales, output strides) evaluated on the same
images: each resample draws one set of indices and computes both metrics on it, so the
difference's interval reflects only how the two disagree, not how hard the images are. An
interval that excludes 0 means the difference is unlikely to be an accident of the images
drawn.

The same ``seed`` reproduces the intervals; a set of identical images has intervals of
width 0 (every resample is the same set).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..data.constants import IGNORE_INDEX

RESAMPLES = 1000
LEVEL = 0.95
_CHUNK = 100  # resamples summed at a time: B × C² floats at once would be 180 MB for 150 classes


@dataclass(frozen=True)
class Interval:
    """A point estimate and its bootstrap interval (NaN when undefined)."""

    estimate: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        return {key: None if math.isnan(value) else value for key, value in vars(self).items()}


@dataclass(frozen=True)
class IoUIntervals:
    """mIoU and per-class IoU with their intervals (or their differences, for a paired comparison)."""

    miou: Interval
    iou: list[Interval]
    resamples: int
    seed: int
    level: float


def image_confusion(
    pred: np.ndarray, target: np.ndarray, num_classes: int, *, ignore_index: int = IGNORE_INDEX
) -> np.ndarray:
    """One image's (C, C) int64 confusion matrix, rows ground truth; ``ignore_index`` skipped."""
    target = np.asarray(target).ravel().astype(np.int64)
    pred = np.asarray(pred).ravel().astype(np.int64)
    kept = target != ignore_index
    cells = target[kept] * num_classes + pred[kept]
    return np.bincount(cells, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def class_iou(matrices: np.ndarray) -> np.ndarray:
    """IoU per class of (..., C, C) matrices → (..., C), NaN where a class has no pixel in
    ground truth or prediction."""
    n = np.asarray(matrices, dtype=np.float64)
    tp = np.diagonal(n, axis1=-2, axis2=-1)
    union = n.sum(axis=-1) + n.sum(axis=-2) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(union > 0, tp / np.maximum(union, 1), np.nan)


def mean_iou(iou: np.ndarray) -> np.ndarray:
    """The mean over the last axis of the defined (non-NaN) IoUs; NaN where none is."""
    iou = np.asarray(iou, dtype=np.float64)
    defined = ~np.isnan(iou)
    count = defined.sum(axis=-1)
    total = np.where(defined, iou, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def resample_indices(num_images: int, resamples: int = RESAMPLES, seed: int = 0) -> np.ndarray:
    """The ``(resamples, num_images)`` image indices, drawn with replacement."""
    _check(num_images, resamples)
    return np.random.default_rng(seed).integers(0, num_images, size=(resamples, num_images))


def resampled_matrices(matrices: np.ndarray, indices: np.ndarray) -> np.ndarray:
    """The summed (B, C, C) matrix of each resample, as float64 (exact: counts below 2**53).

    Summing as ``weights @ matrices``, where ``weights[b, i]`` counts how often image ``i``
    is drawn in resample ``b``, is one matrix product instead of B × N additions.
    """
    matrices = np.asarray(matrices)
    num_images, c, _ = matrices.shape
    flat = matrices.reshape(num_images, c * c).astype(np.float64, copy=False)
    resamples = indices.shape[0]
    offsets = np.arange(resamples)[:, None] * num_images
    weights = np.bincount((indices + offsets).ravel(), minlength=resamples * num_images)
    weights = weights.reshape(resamples, num_images).astype(np.float64)
    return (weights @ flat).reshape(resamples, c, c)


def bootstrap_iou(
    matrices: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> IoUIntervals:
    """mIoU and per-class IoU of the summed per-image ``matrices`` (N, C, C), with intervals."""
    matrices = np.asarray(matrices)
    indices = resample_indices(matrices.shape[0], resamples, seed)
    total = matrices.sum(axis=0)
    iou = class_iou(total)
    draws = _draw_iou(matrices, indices)
    return _intervals(float(mean_iou(iou)), iou, mean_iou(draws), draws, resamples, seed, level)


def paired_difference(
    first: np.ndarray, second: np.ndarray, *, resamples: int = RESAMPLES, seed: int = 0, level: float = LEVEL
) -> IoUIntervals:
    """``first − second`` in mIoU and per-class IoU, with paired intervals: the per-image
    matrices (N, C, C) of two settings on the same N images, resampled with the same indices."""
    first, second = np.asarray(first), np.asarray(second)
    if first.shape != second.shape:
        raise ValueError(
            f"paired_difference: matrices of shapes {first.shape} and {second.shape}; need the same images"
        )
    indices = resample_indices(first.shape[0], resamples, seed)
    iou_a, iou_b = class_iou(first.sum(axis=0)), class_iou(second.sum(axis=0))
    draws_a, draws_b = _draw_iou(first, indices), _draw_iou(second, indices)
    estimate = float(mean_iou(iou_a) - mean_iou(iou_b))
    return _intervals(
        estimate, iou_a - iou_b, mean_iou(draws_a) - mean_iou(draws_b), draws_a - draws_b, resamples, seed, level
    )


def _draw_iou(matrices: np.ndarray, indices: np.ndarray) -> np.ndarray:
    matrices = np.asarray(matrices, dtype=np.float64)  # once, not per chunk (2000 ADE20K images: 360 MB)
    return np.concatenate(
        [class_iou(resampled_matrices(matrices, indices[i : i + _CHUNK])) for i in range(0, len(indices), _CHUNK)]
    )


def _intervals(
    estimate: float,
    iou: np.ndarray,
    miou_draws: np.ndarray,
    iou_draws: np.ndarray,
    resamples: int,
    seed: int,
    level: float,
) -> IoUIntervals:
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    tails = (100 * (1 - level) / 2, 100 * (1 + level) / 2)
    per_class = [Interval(float(iou[c]), *_percentiles(iou_draws[:, c], tails)) for c in range(iou.shape[0])]
    return IoUIntervals(Interval(estimate, *_percentiles(miou_draws, tails)), per_class, resamples, seed, level)


def _percentiles(values: np.ndarray, tails: tuple[float, float]) -> tuple[float, float]:
    kept = values[~np.isnan(values)]
    if kept.size == 0:
        return math.nan, math.nan
    low, high = np.percentile(kept, tails)
    return float(low), float(high)


def _check(num_images: int, resamples: int) -> None:
    if num_images < 1:
        raise ValueError("the bootstrap needs at least one image")
    if isinstance(resamples, bool) or not isinstance(resamples, int | np.integer) or resamples < 1:
        raise ValueError(f"resamples must be an integer >= 1, got {resamples!r}")
