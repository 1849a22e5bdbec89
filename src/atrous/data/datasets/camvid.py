"""CamVid road scenes, 11 classes, in the SegNet tutorial's layout.

Brostow et al., "Semantic object classes in video: a high-definition ground truth
database", Pattern Recognition Letters, 2009; the 360×480 split of SegNet (Badrinarayanan
et al., 2017): 367 train, 101 val, 233 test images.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import IGNORE_INDEX
from ..labels import apply_lookup, lookup_table
from ._files import require_dir, strict_pairs
from .base import PublishedDataset

CAMVID_CLASSES = [
    "Sky", "Building", "Pole", "Road", "Pavement", "Tree",
    "SignSymbol", "Fence", "Car", "Pedestrian", "Bicyclist",
]  # fmt: skip
CAMVID_PALETTE = [
    (128, 128, 128), (128, 0, 0), (192, 192, 128), (128, 64, 128), (60, 40, 222), (128, 128, 0),
    (192, 128, 128), (64, 64, 128), (64, 0, 128), (64, 64, 0), (0, 128, 192),
]  # fmt: skip
# Label 11 is "Unlabelled": ignored in the loss and the metrics, like 255.
_VOID = 11
_TABLE = lookup_table({_VOID: IGNORE_INDEX})

SPLITS = ("train", "val", "test")


class CamVid(PublishedDataset):
    """CamVid: ``root/{split}/X.png`` with its labels in ``root/{split}annot/X.png``.

    Labels are single-channel class indices 0..10 (:data:`CAMVID_CLASSES`); 11
    (Unlabelled) becomes ``IGNORE_INDEX``.

    Args:
        root: the folder with ``train/``, ``trainannot/``, ``val/``, ….
        split: ``"train"``, ``"val"`` or ``"test"``.
        transforms: ``(image, mask) -> (image, mask)``.

    Raises:
        FileNotFoundError: the split's image or label folder is missing.
        EmptyDatasetError: no images in the split's folder.
        UnmatchedFilesError: images without labels or labels without images.
    """

    TITLE, CLASSES, PALETTE, SPLITS = "CamVid", CAMVID_CLASSES, CAMVID_PALETTE, SPLITS

    def find_samples(self, root: Path, split: str) -> tuple[Path, list[tuple[Path, Path]]]:
        image_dir = require_dir(root / split, f"CamVid {split} image folder")
        mask_dir = require_dir(root / f"{split}annot", f"CamVid {split} label folder")
        return root, strict_pairs(image_dir, mask_dir, "CamVid")

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """11 (Unlabelled) → ``IGNORE_INDEX``; 0..10 stay."""
        return apply_lookup(super().encode_mask(raw, path), _TABLE)

    def expected_labels(self) -> str:
        return f"0..10, or {_VOID} or {IGNORE_INDEX} for unlabelled"
