"""Where the model goes wrong: its worst images and the classes it confuses.

* **Worst images**: ranked by the image's own mIoU, the mean IoU over the classes present
  in that image's ground truth (a class only predicted there lowers the IoU of the class
  whose pixels it took; images with no scored pixel are not ranked). Each is drawn as four
  panels, image | truth | prediction | errors, the errors panel showing wrong pixels in
  red, ignored pixels in grey and right ones as the image darkened.
* **Most-confused pairs**: the largest off-diagonal entries of the dataset's confusion
  matrix as a share of the true class's pixels, ``n_ij / t_i`` ("12 % of cat pixels are
  predicted dog"); ties go to the pair with more pixels.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from ...data.constants import IGNORE_INDEX
from ...inference.visualize import colorize

ERROR_RED = (230, 25, 25)
VOID_GREY = (128, 128, 128)
PANEL_WIDTH = 384  # each panel is shrunk to at most this width (labels: nearest neighbour) …
MIN_PANEL_WIDTH = 192  # … or a small image enlarged by a whole factor to at least this one
GAP = 4


def image_miou(matrix: np.ndarray) -> float:
    """Mean IoU over the classes present in this image's ground truth (NaN when none is)."""
    n = np.asarray(matrix, dtype=np.float64)
    tp = np.diag(n)
    truth = n.sum(axis=1)
    present = truth > 0
    if not present.any():
        return math.nan
    union = truth + n.sum(axis=0) - tp
    return float((tp[present] / union[present]).mean())


def confused_pairs(matrix: np.ndarray, class_names: Sequence[str], top: int = 10) -> list[dict]:
    """The ``top`` off-diagonal entries by share of the true class's pixels (zero entries never)."""
    n = np.asarray(matrix, dtype=np.int64)
    truth = n.sum(axis=1)
    pairs = [
        (n[i, j] / truth[i], int(n[i, j]), i, j)
        for i in range(n.shape[0])
        for j in range(n.shape[1])
        if i != j and n[i, j] > 0
    ]
    pairs.sort(key=lambda p: (-p[0], -p[1], p[2], p[3]))
    return [
        {"true": class_names[i], "predicted": class_names[j], "pixels": count, "share": float(share)}
        for share, count, i, j in pairs[:top]
    ]


@dataclass
class BadImage:
    """One image kept for the error gallery: its index in the split and what was scored."""

    index: int
    miou: float
    image: np.ndarray  # (H, W, 3) uint8
    target: np.ndarray  # (H, W)
    pred: np.ndarray  # (H, W)


class WorstImages:
    """The ``k`` images with the lowest :func:`image_miou` seen so far (ties: the earlier image)."""

    def __init__(self, k: int) -> None:
        self.k = k
        self._heap: list[tuple[float, int, BadImage]] = []  # (-miou, -index): the best kept on top

    def would_keep(self, miou: float, index: int) -> bool:
        if self.k == 0 or math.isnan(miou):
            return False
        return len(self._heap) < self.k or (-miou, -index) > self._heap[0][:2]

    def offer(self, item: BadImage) -> None:
        if not self.would_keep(item.miou, item.index):
            return
        entry = (-item.miou, -item.index, item)
        if len(self._heap) < self.k:
            heapq.heappush(self._heap, entry)
        else:
            heapq.heapreplace(self._heap, entry)

    def worst_first(self) -> list[BadImage]:
        return [entry[2] for entry in sorted(self._heap, key=lambda e: (-e[0], -e[1]))]


def error_panel(
    image: np.ndarray,
    target: np.ndarray,
    pred: np.ndarray,
    palette: Sequence[Sequence[int]],
    *,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """image | truth | prediction | errors side by side, (H', 4W' + 3·gap, 3) uint8 on white."""
    void = target == ignore_index
    truth = colorize(target, palette)
    truth[void] = VOID_GREY
    errors = (image.astype(np.float32) * 0.35).astype(np.uint8)
    errors[(pred != target) & ~void] = ERROR_RED
    errors[void] = VOID_GREY
    panels = [image, truth, colorize(pred, palette), errors]
    height, width = image.shape[:2]
    size = None
    if width > PANEL_WIDTH:
        size = (PANEL_WIDTH, max(1, round(height * PANEL_WIDTH / width)))
    elif width < MIN_PANEL_WIDTH:
        factor = -(-MIN_PANEL_WIDTH // width)
        size = (width * factor, height * factor)
    if size is not None:
        panels = [np.asarray(Image.fromarray(p).resize(size, Image.Resampling.NEAREST)) for p in panels]
        height, width = panels[0].shape[:2]
    out = np.full((height, 4 * width + 3 * GAP, 3), 255, dtype=np.uint8)
    for i, panel in enumerate(panels):
        out[:, i * (width + GAP) : i * (width + GAP) + width] = panel
    return out
