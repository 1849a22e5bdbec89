"""Cityscapes fine annotations, evaluated on the 19 standard training classes.

Cordts et al., "The Cityscapes Dataset for Semantic Urban Scene Understanding", CVPR 2016.
The ``*_gtFine_labelIds.png`` files store the 34 label ids of the full label set;
:data:`LABEL_ID_TO_TRAIN_ID` is the table of ``cityscapesscripts/helpers/labels.py``
that keeps 19 of them and ignores the rest.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import IGNORE_INDEX
from ..errors import EmptyDatasetError, UnmatchedFilesError
from ..labels import apply_lookup, lookup_table
from ._files import describe_unmatched, require_dir
from .base import PublishedDataset

CITYSCAPES_CLASSES = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle",
]  # fmt: skip
CITYSCAPES_PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153), (153, 153, 153),
    (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152), (70, 130, 180), (220, 20, 60),
    (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
]  # fmt: skip
# labelId -> trainId for the 19 evaluated classes; every other id (unlabeled 0, ego vehicle 1,
# …, parking 9, rail track 10, guard rail 14, bridge 15, tunnel 16, polegroup 18, caravan 29,
# trailer 30, license plate) is ignored.
_TRAIN_IDS = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}  # fmt: skip
LABEL_ID_TO_TRAIN_ID = lookup_table(_TRAIN_IDS, default=IGNORE_INDEX, size=256)  # 256 entries, one per uint8 value

SPLITS = ("train", "val", "test")
_IMAGE_SUFFIX = "_leftImg8bit.png"
_MASK_SUFFIX = "_gtFine_labelIds.png"


class Cityscapes(PublishedDataset):
    """Cityscapes: ``leftImg8bit/{split}/{city}/X_leftImg8bit.png`` with its ``gtFine`` labelIds.

    Labels come from ``gtFine/{split}/{city}/X_gtFine_labelIds.png``; their label ids become
    the 19 train ids through :data:`LABEL_ID_TO_TRAIN_ID`, all other ids ``IGNORE_INDEX``.
    (The ``test`` split's public masks are all "unlabeled", so they are all ignored.)

    Args:
        root: the folder that holds ``leftImg8bit/`` and ``gtFine/``.
        split: ``"train"``, ``"val"`` or ``"test"``.
        transforms: ``(image, mask) -> (image, mask)``.

    Raises:
        FileNotFoundError: ``leftImg8bit/{split}`` or ``gtFine/{split}`` is missing.
        EmptyDatasetError: no ``*_leftImg8bit.png`` images.
        UnmatchedFilesError: images without a labelIds file.
    """

    TITLE, CLASSES, PALETTE, SPLITS = "Cityscapes", CITYSCAPES_CLASSES, CITYSCAPES_PALETTE, SPLITS

    def find_samples(self, root: Path, split: str) -> tuple[Path, list[tuple[Path, Path]]]:
        image_dir = require_dir(root / "leftImg8bit" / split, "Cityscapes image folder")
        mask_dir = require_dir(root / "gtFine" / split, "Cityscapes gtFine folder")
        images = sorted(image_dir.glob(f"*/*{_IMAGE_SUFFIX}"))
        if not images:
            raise EmptyDatasetError(f"no {{city}}/*{_IMAGE_SUFFIX} images in {image_dir}")
        samples, lonely = [], []
        for image in images:
            name = image.name[: -len(_IMAGE_SUFFIX)]
            mask = mask_dir / image.parent.name / f"{name}{_MASK_SUFFIX}"
            if mask.is_file():
                samples.append((image, mask))
            else:
                lonely.append(image)
        if lonely:
            raise UnmatchedFilesError(describe_unmatched(lonely, [], image_dir, mask_dir))
        return root, samples

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """Label ids → train ids; ids outside the table (including >255) → ``IGNORE_INDEX``."""
        return apply_lookup(super().encode_mask(raw, path), LABEL_ID_TO_TRAIN_ID, default=IGNORE_INDEX)
