"""IoU by object size: does the model miss small things?

Semantic masks have classes, not instances, so an *object* here is a connected component
of one class's ground-truth pixels in one image, with **8-connectivity** (pixels touching
by a side or a corner belong together; two objects of one class that touch are one).

An object ``O`` of class ``c`` is scored by its own IoU against the prediction:
``|O ∩ P_c| / |O ∪ K|``, where ``P_c`` are the pixels predicted ``c`` and ``K`` is the union
of the predicted components of ``c`` (8-connected, over the whole image) that share at least
one pixel with ``O``. A prediction that spills over the object, or merges it with a
neighbour, is charged to it; predicted blobs elsewhere are not (they are false positives of
no object). Pixels whose ground truth is ignored are counted in neither ``O`` nor ``K``
(an object's pixels are never ignored: they are labelled ``c``). An object missed entirely
has IoU 0.

Sizes are bucketed by the object's area in pixels with COCO's thresholds (Lin et al. 2014,
the detection evaluation's "area" ranges): *small* below 32² = 1024, *medium* from 1024 to
below 96² = 9216, *large* from 9216. They were set for COCO's ~640×480 images; on much
larger images more objects are large.

Connected components are ``scipy.ndimage.label``'s, numbered in raster order of each
component's first pixel.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from ..data.constants import IGNORE_INDEX

_EIGHT_CONNECTED = np.ones((3, 3), dtype=bool)
SIZES = (("small", 0, 32**2), ("medium", 32**2, 96**2), ("large", 96**2, None))


def connected_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """8-connected components of a boolean (H, W) mask: ``(labels, count)``, labels int64
    with 0 outside the mask and 1..count inside, numbered in raster order of each
    component's first pixel (``scipy.ndimage.label``)."""
    labels, count = ndimage.label(np.asarray(mask, dtype=bool), structure=_EIGHT_CONNECTED)
    return labels.astype(np.int64, copy=False), int(count)


@dataclass(frozen=True)
class ObjectScores:
    """The objects of some images: ``classes``, ``areas`` (pixels) and ``ious``, one entry each."""

    classes: np.ndarray
    areas: np.ndarray
    ious: np.ndarray


def object_scores(
    pred: np.ndarray, target: np.ndarray, num_classes: int, *, ignore_index: int = IGNORE_INDEX
) -> ObjectScores:
    """Every ground-truth object of one image with its area and IoU (module docstring)."""
    pred = np.asarray(pred)
    target = np.asarray(target)
    valid = target != ignore_index
    classes, areas, ious = [], [], []
    for c in np.unique(target[valid]):
        if not 0 <= c < num_classes:
            continue
        truth, n_truth = connected_components(target == c)
        predicted, n_pred = connected_components(pred == c)
        both = (truth > 0) & (predicted > 0)
        pairs = truth[both] * (n_pred + 1) + predicted[both]
        overlap = np.bincount(pairs, minlength=(n_truth + 1) * (n_pred + 1)).reshape(n_truth + 1, n_pred + 1)
        overlap = overlap[1:, 1:]  # (objects, predicted components)
        area = np.bincount(truth.ravel(), minlength=n_truth + 1)[1:]
        pred_area = np.bincount(predicted[valid], minlength=n_pred + 1)[1:]  # ignored pixels not counted
        touching = overlap > 0
        intersection = overlap.sum(axis=1)
        union = area + (touching * (pred_area[None, :] - overlap)).sum(axis=1)
        classes.append(np.full(n_truth, c, dtype=np.int64))
        areas.append(area)
        ious.append(intersection / union)
    if not classes:
        return ObjectScores(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
    return ObjectScores(np.concatenate(classes), np.concatenate(areas), np.concatenate(ious).astype(np.float64))


def size_bucket(area: int) -> str:
    """``small``, ``medium`` or ``large`` (COCO's area thresholds)."""
    for name, low, high in SIZES:
        if area >= low and (high is None or area < high):
            return name
    raise ValueError(f"area must be >= 0, got {area}")


@dataclass
class ObjectSizes:
    """Object scores gathered image by image, summarised per size and per class."""

    num_classes: int
    parts: list[ObjectScores] = field(default_factory=list)

    def add(self, scores: ObjectScores) -> None:
        self.parts.append(scores)

    def scores(self) -> ObjectScores:
        if not self.parts:
            return ObjectScores(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
        return ObjectScores(
            *(np.concatenate([getattr(p, k) for p in self.parts]) for k in ("classes", "areas", "ious"))
        )

    def summary(self, class_names: Sequence[str]) -> dict:
        """``{"sizes": {bucket: {"objects", "mean_iou"}}, "per_class": {name: {bucket: {...}}}}``;
        ``mean_iou`` is ``None`` for a bucket without objects."""
        scores = self.scores()
        buckets = np.array([size_bucket(int(a)) for a in scores.areas], dtype=object)

        def stats(selected: np.ndarray) -> dict:
            n = int(selected.sum())
            return {"objects": n, "mean_iou": float(scores.ious[selected].mean()) if n else None}

        sizes = {name: stats(buckets == name) for name, _, _ in SIZES}
        per_class = {
            class_names[c]: {name: stats((buckets == name) & (scores.classes == c)) for name, _, _ in SIZES}
            for c in range(self.num_classes)
        }
        return {"sizes": sizes, "per_class": per_class}
