"""A seeded uniform sample of the scored pixels, drawn while the evaluation streams by.

Calibration needs each pixel's class scores, and a split holds hundreds of millions of
pixels, so the report keeps at most ``capacity`` of them: every scored pixel gets a random
key from ``numpy.random.default_rng(seed)`` in the order the evaluation visits it, and the
sample is the ``capacity`` pixels with the smallest keys (a bottom-k sample: uniform,
without replacement, and the same for the same seed and data). When the split has at most
``capacity`` scored pixels the sample is all of them. Keys are compared before any score is
copied, so a batch costs one key per pixel and a copy of only the pixels that enter.
"""

from __future__ import annotations

import numpy as np
import torch

from ...data.constants import IGNORE_INDEX

#: At most this many pixels (1M), and at most 2**25 stored scores (128 MiB of float32).
MAX_PIXELS = 1_000_000
MAX_VALUES = 2**25


def default_capacity(num_classes: int) -> int:
    return max(1, min(MAX_PIXELS, MAX_VALUES // max(1, num_classes)))


class PixelSample:
    """Keeps the scores (n, C) and ground-truth labels (n,) of a uniform pixel sample."""

    def __init__(self, capacity: int, seed: int = 0, *, ignore_index: int = IGNORE_INDEX) -> None:
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity = capacity
        self.ignore_index = ignore_index
        self.seen = 0  # scored pixels visited
        self._rng = np.random.default_rng(seed)
        self._keys = np.zeros(0, dtype=np.float64)
        # numpy, not tensors: a sample taken under torch.inference_mode stays usable after it.
        self._scores: np.ndarray | None = None
        self._labels = np.zeros(0, dtype=np.int64)

    @torch.no_grad()
    def add(self, scores: torch.Tensor, masks: torch.Tensor) -> None:
        """Offer a batch: ``scores`` (B, C, H, W), ``masks`` (B, H, W); ignored pixels are skipped."""
        num_classes = scores.shape[1]
        valid = (masks != self.ignore_index).flatten()
        positions = valid.nonzero().squeeze(1)  # flat (b, h, w) positions of scored pixels
        count = positions.numel()
        if count == 0:
            return
        self.seen += count
        keys = self._rng.random(count)
        merged = np.concatenate([self._keys, keys])
        if merged.size > self.capacity:
            kept = np.argpartition(merged, self.capacity - 1)[: self.capacity]
        else:
            kept = np.arange(merged.size)
        old = kept[kept < self._keys.size]
        new = kept[kept >= self._keys.size] - self._keys.size
        picked = positions[torch.from_numpy(new).to(positions.device)]
        flat = scores.permute(0, 2, 3, 1).reshape(-1, num_classes)
        new_scores = flat[picked].float().cpu().numpy()
        new_labels = masks.flatten()[picked].long().cpu().numpy()
        previous = self._scores if self._scores is not None else new_scores[:0]
        self._scores = np.concatenate([previous[old], new_scores])
        self._labels = np.concatenate([self._labels[old], new_labels])
        self._keys = np.concatenate([self._keys[old], keys[new]])

    def result(self) -> tuple[np.ndarray, np.ndarray]:
        """``(scores (n, C) float32, labels (n,) int64)``, in no particular order."""
        if self._scores is None:
            return np.zeros((0, 0), dtype=np.float32), self._labels
        return self._scores, self._labels
