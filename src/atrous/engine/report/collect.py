"""The report's one pass: per-image figures gathered from :func:`~atrous.engine.evaluator.evaluate`'s
``on_batch`` hook, so they come from the very labels the confusion matrix counts.

Per image it keeps a C×C confusion matrix (for the bootstrap and the ranking of images),
boundary-IoU counts, trimap counts per band width and the scores of its objects; across
images a seeded sample of pixel scores (calibration) and the worst images themselves.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from ...data.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from ...metrics.bootstrap import image_confusion
from ...metrics.boundary import DILATION_RATIO, TRIMAP_WIDTHS, boundary_counts, boundary_distance, trimap_counts
from ...metrics.objects import ObjectScores, ObjectSizes, object_scores
from .errors import BadImage, WorstImages, image_miou
from .sample import PixelSample, default_capacity


class ImageMatrices:
    """An ``on_batch`` hook keeping only each image's confusion matrix (a compared setting)."""

    def __init__(self, num_classes: int, *, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrices: list[np.ndarray] = []

    def __call__(self, images: torch.Tensor, masks: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
        for target, pred in zip(masks.cpu().numpy(), labels.cpu().numpy(), strict=True):
            self.matrices.append(image_confusion(pred, target, self.num_classes, ignore_index=self.ignore_index))

    def stacked(self) -> np.ndarray:
        c = self.num_classes
        return np.stack(self.matrices) if self.matrices else np.zeros((0, c, c), dtype=np.int64)


@dataclass
class Collected:
    """What one pass gathered, image by image (N images, C classes, W trimap widths)."""

    matrices: np.ndarray  # (N, C, C) int64
    boundary_intersection: np.ndarray  # (N, C) int64
    boundary_union: np.ndarray  # (N, C) int64
    boundary_distances: np.ndarray  # (N,) the d of each image
    trimap_widths: tuple[int, ...]
    trimap_correct: np.ndarray  # (N, W) int64
    trimap_scored: np.ndarray  # (N, W) int64
    objects: ObjectScores
    sample_scores: np.ndarray  # (n, C) float32: logits, or log-probabilities (see ``probabilities``)
    sample_labels: np.ndarray  # (n,) int64
    pixels_scored: int
    probabilities: bool  # whether the path's scores were probabilities (log taken for the sample)
    worst: list[BadImage]


class ReportCollector:
    """The ``on_batch`` hook of ``atrous eval --report``.

    Args:
        num_classes: C.
        probabilities: whether the prediction path returns probabilities (test-time
            augmentation) rather than logits; the calibration sample is kept as logits or
            log-probabilities accordingly.
        worst: how many of the worst images to keep for the gallery.
        seed: the calibration sample's seed.
        sample_pixels: the calibration sample's size (default: :func:`default_capacity`).
        mean, std: the normalisation the evaluation images went through (to draw them).
    """

    def __init__(
        self,
        num_classes: int,
        *,
        probabilities: bool,
        worst: int = 6,
        seed: int = 0,
        sample_pixels: int | None = None,
        ignore_index: int = IGNORE_INDEX,
        dilation_ratio: float = DILATION_RATIO,
        trimap_widths: Sequence[int] = TRIMAP_WIDTHS,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ) -> None:
        self.num_classes = num_classes
        self.probabilities = probabilities
        self.ignore_index = ignore_index
        self.dilation_ratio = dilation_ratio
        self.trimap_widths = tuple(int(w) for w in trimap_widths)
        self.mean = torch.tensor(mean).view(3, 1, 1)
        self.std = torch.tensor(std).view(3, 1, 1)
        self._matrices = ImageMatrices(num_classes, ignore_index=ignore_index)
        self._boundary: list[tuple[np.ndarray, np.ndarray]] = []
        self._distances: list[int] = []
        self._trimap: list[tuple[np.ndarray, np.ndarray]] = []
        self._objects = ObjectSizes(num_classes)
        self._sample = PixelSample(sample_pixels or default_capacity(num_classes), seed, ignore_index=ignore_index)
        self._worst = WorstImages(worst)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, masks: torch.Tensor, scores: torch.Tensor, labels: torch.Tensor) -> None:
        valid = masks != self.ignore_index
        if ((masks[valid] < 0) | (masks[valid] >= self.num_classes)).any():
            return  # a label outside the classes: the confusion matrix's update names it next
        self._sample.add(scores, masks)
        start = len(self._matrices.matrices)
        self._matrices(images, masks, scores, labels)
        for b in range(masks.shape[0]):
            target, pred = masks[b], labels[b].long()
            height, width = target.shape
            self._distances.append(boundary_distance(height, width, self.dilation_ratio))
            self._boundary.append(
                boundary_counts(
                    pred, target, self.num_classes, ignore_index=self.ignore_index, dilation_ratio=self.dilation_ratio
                )
            )
            self._trimap.append(trimap_counts(pred, target, self.trimap_widths, ignore_index=self.ignore_index))
            target_np, pred_np = target.cpu().numpy(), pred.cpu().numpy()
            self._objects.add(object_scores(pred_np, target_np, self.num_classes, ignore_index=self.ignore_index))
            index = start + b
            miou = image_miou(self._matrices.matrices[index])
            if self._worst.would_keep(miou, index):
                self._worst.offer(BadImage(index, miou, self._picture(images[b]), target_np, pred_np))

    def _picture(self, image: torch.Tensor) -> np.ndarray:
        """A normalised (3, H, W) image back to (H, W, 3) uint8."""
        rgb = image.float().cpu() * self.std + self.mean
        return (rgb.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy()

    def result(self) -> Collected:
        c = self.num_classes
        widths = len(self.trimap_widths)
        scores, labels = self._sample.result()
        if self.probabilities:
            scores = np.log(np.maximum(scores, 1e-30))  # the rule of atrous.inference.temperature
        return Collected(
            matrices=self._matrices.stacked(),
            boundary_intersection=_stack([b[0] for b in self._boundary], (0, c)),
            boundary_union=_stack([b[1] for b in self._boundary], (0, c)),
            boundary_distances=np.array(self._distances, dtype=np.int64),
            trimap_widths=self.trimap_widths,
            trimap_correct=_stack([t[0] for t in self._trimap], (0, widths)),
            trimap_scored=_stack([t[1] for t in self._trimap], (0, widths)),
            objects=self._objects.scores(),
            sample_scores=scores,
            sample_labels=labels,
            pixels_scored=self._sample.seen,
            probabilities=self.probabilities,
            worst=self._worst.worst_first(),
        )


def _stack(rows: list[np.ndarray], empty: tuple[int, int]) -> np.ndarray:
    return np.stack(rows) if rows else np.zeros(empty, dtype=np.int64)
