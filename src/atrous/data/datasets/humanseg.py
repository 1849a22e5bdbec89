"""A small set of people photos with person masks, for the portrait-mode person model.

290 photos ``root/images/N.jpg`` (mostly 640×480) with masks ``root/masks/N.png``
(0 = background, 255 = person), numbered 1…300 with gaps. Many masks are smaller than
their photo (made at another resolution): they are resized to the photo by nearest
neighbour, which keeps the two values.

Splits, in numeric order of N: ``train`` the first 250, ``val`` the last 40 (held out),
``all`` every pair.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..labels import apply_label_map
from ._files import require_dir, strict_pairs
from .base import PublishedDataset

HUMANSEG_CLASSES = ["background", "person"]
HUMANSEG_PALETTE = [(0, 0, 0), (220, 20, 60)]
TRAIN_SIZE = 250
SPLITS = {"train": slice(0, TRAIN_SIZE), "val": slice(TRAIN_SIZE, None), "all": slice(0, None)}


def _photo_number(pair: tuple[Path, Path]) -> tuple[int, str]:
    stem = pair[0].stem
    return (int(stem), stem) if stem.isdigit() else (1 << 30, stem)


class HumanSeg(PublishedDataset):
    """People photos: class 0 background, class 1 person.

    Args:
        root: the folder with ``images/`` and ``masks/``.
        split: ``"train"`` (the first 250 in numeric order), ``"val"`` (the rest) or ``"all"``.
        transforms: ``(image, mask) -> (image, mask)``.
    """

    TITLE, CLASSES, PALETTE, SPLITS = "humanseg", HUMANSEG_CLASSES, HUMANSEG_PALETTE, SPLITS
    RESIZE_MASKS = True

    def find_samples(self, root: Path, split: str) -> tuple[Path, list[tuple[Path, Path]]]:
        image_dir = require_dir(root / "images", "humanseg image folder")
        mask_dir = require_dir(root / "masks", "humanseg mask folder")
        pairs = sorted(strict_pairs(image_dir, mask_dir, "humanseg"), key=_photo_number)
        return root, pairs[SPLITS[split]]

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """0 → 0 (background), 255 → 1 (person); any other value fails the label check."""
        return apply_label_map(super().encode_mask(raw, path), {0: 0, 255: 1})

    def expected_labels(self) -> str:
        return "0 (background) or 255 (person)"
