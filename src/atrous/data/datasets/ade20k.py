"""ADE20K in the layout of the MIT Scene Parsing Benchmark (``ADEChallengeData2016``), 150 classes.

Zhou et al., "Scene Parsing through ADE20K Dataset", CVPR 2017. Class names and colours are
those of the benchmark's ``objectInfo150`` as used by mmsegmentation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..constants import IGNORE_INDEX
from ..labels import apply_lookup, lookup_table
from ._files import require_dir, strict_pairs
from .base import PublishedDataset

ADE20K_CLASSES = [
    "wall", "building", "sky", "floor", "tree", "ceiling", "road", "bed", "windowpane", "grass", "cabinet",
    "sidewalk", "person", "earth", "door", "table", "mountain", "plant", "curtain", "chair", "car", "water",
    "painting", "sofa", "shelf", "house", "sea", "mirror", "rug", "field", "armchair", "seat", "fence", "desk",
    "rock", "wardrobe", "lamp", "bathtub", "railing", "cushion", "base", "box", "column", "signboard",
    "chest of drawers", "counter", "sand", "sink", "skyscraper", "fireplace", "refrigerator", "grandstand",
    "path", "stairs", "runway", "case", "pool table", "pillow", "screen door", "stairway", "river", "bridge",
    "bookcase", "blind", "coffee table", "toilet", "flower", "book", "hill", "bench", "countertop", "stove",
    "palm", "kitchen island", "computer", "swivel chair", "boat", "bar", "arcade machine", "hovel", "bus",
    "towel", "light", "truck", "tower", "chandelier", "awning", "streetlight", "booth", "television receiver",
    "airplane", "dirt track", "apparel", "pole", "land", "bannister", "escalator", "ottoman", "bottle",
    "buffet", "poster", "stage", "van", "ship", "fountain", "conveyer belt", "canopy", "washer", "plaything",
    "swimming pool", "stool", "barrel", "basket", "waterfall", "tent", "bag", "minibike", "cradle", "oven",
    "ball", "food", "step", "tank", "trade name", "microwave", "pot", "animal", "bicycle", "lake",
    "dishwasher", "screen", "blanket", "sculpture", "hood", "sconce", "vase", "traffic light", "tray",
    "ashcan", "fan", "pier", "crt screen", "plate", "monitor", "bulletin board", "shower", "radiator",
    "glass", "clock", "flag",
]  # fmt: skip
ADE20K_PALETTE = [
    (120, 120, 120), (180, 120, 120), (6, 230, 230), (80, 50, 50), (4, 200, 3), (120, 120, 80), (140, 140, 140),
    (204, 5, 255), (230, 230, 230), (4, 250, 7), (224, 5, 255), (235, 255, 7), (150, 5, 61), (120, 120, 70),
    (8, 255, 51), (255, 6, 82), (143, 255, 140), (204, 255, 4), (255, 51, 7), (204, 70, 3), (0, 102, 200),
    (61, 230, 250), (255, 6, 51), (11, 102, 255), (255, 7, 71), (255, 9, 224), (9, 7, 230), (220, 220, 220),
    (255, 9, 92), (112, 9, 255), (8, 255, 214), (7, 255, 224), (255, 184, 6), (10, 255, 71), (255, 41, 10),
    (7, 255, 255), (224, 255, 8), (102, 8, 255), (255, 61, 6), (255, 194, 7), (255, 122, 8), (0, 255, 20),
    (255, 8, 41), (255, 5, 153), (6, 51, 255), (235, 12, 255), (160, 150, 20), (0, 163, 255), (140, 140, 140),
    (250, 10, 15), (20, 255, 0), (31, 255, 0), (255, 31, 0), (255, 224, 0), (153, 255, 0), (0, 0, 255),
    (255, 71, 0), (0, 235, 255), (0, 173, 255), (31, 0, 255), (11, 200, 200), (255, 82, 0), (0, 255, 245),
    (0, 61, 255), (0, 255, 112), (0, 255, 133), (255, 0, 0), (255, 163, 0), (255, 102, 0), (194, 255, 0),
    (0, 143, 255), (51, 255, 0), (0, 82, 255), (0, 255, 41), (0, 255, 173), (10, 0, 255), (173, 255, 0),
    (0, 255, 153), (255, 92, 0), (255, 0, 255), (255, 0, 245), (255, 0, 102), (255, 173, 0), (255, 0, 20),
    (255, 184, 184), (0, 31, 255), (0, 255, 61), (0, 71, 255), (255, 0, 204), (0, 255, 194), (0, 255, 82),
    (0, 10, 255), (0, 112, 255), (51, 0, 255), (0, 194, 255), (0, 122, 255), (0, 255, 163), (255, 153, 0),
    (0, 255, 10), (255, 112, 0), (143, 255, 0), (82, 0, 255), (163, 255, 0), (255, 235, 0), (8, 184, 170),
    (133, 0, 255), (0, 255, 92), (184, 0, 255), (255, 0, 31), (0, 184, 255), (0, 214, 255), (255, 0, 112),
    (92, 255, 0), (0, 224, 255), (112, 224, 255), (70, 184, 160), (163, 0, 255), (153, 0, 255), (71, 255, 0),
    (255, 0, 163), (255, 204, 0), (255, 0, 143), (0, 255, 235), (133, 255, 0), (255, 0, 235), (245, 0, 255),
    (255, 0, 122), (255, 245, 0), (10, 190, 212), (214, 255, 0), (0, 204, 255), (20, 0, 255), (255, 255, 0),
    (0, 153, 255), (0, 41, 255), (0, 255, 204), (41, 0, 255), (41, 255, 0), (173, 0, 255), (0, 245, 255),
    (71, 0, 255), (122, 0, 255), (0, 255, 184), (0, 92, 255), (184, 255, 0), (0, 133, 255), (255, 214, 0),
    (25, 194, 194), (102, 255, 0), (92, 0, 255),
]  # fmt: skip
# Stored 0 is "other objects", not one of the 150 classes: ignored. Stored k (1..150) is class k-1.
_TABLE = lookup_table({0: IGNORE_INDEX, **{k: k - 1 for k in range(1, 151)}})

SPLITS = {"train": "training", "val": "validation"}


def find_ade20k_root(root: Path) -> Path:
    """``ADEChallengeData2016`` given it or the folder that holds it."""
    for candidate in (root, root / "ADEChallengeData2016"):
        if (candidate / "images").is_dir() and (candidate / "annotations").is_dir():
            return candidate
    state = "does not exist" if not root.exists() else "holds no images/ and annotations/ folders"
    raise FileNotFoundError(f"ADE20K root {root} {state}; pass ADEChallengeData2016 or the folder that holds it")


class ADE20K(PublishedDataset):
    """ADE20K: ``images/{training,validation}/X.jpg`` with ``annotations/{training,validation}/X.png``.

    Masks store 0 for "other" (ignored, ``IGNORE_INDEX``) and 1..150 for the classes, which
    become 0..149 (:data:`ADE20K_CLASSES`) — mmsegmentation's ``reduce_zero_label``.

    Args:
        root: ``ADEChallengeData2016`` or the folder that holds it.
        split: ``"train"`` (``training``) or ``"val"`` (``validation``).
        transforms: ``(image, mask) -> (image, mask)``.

    Raises:
        FileNotFoundError: the split's image or annotation folder is missing.
        EmptyDatasetError: no images.
        UnmatchedFilesError: images without annotations or annotations without images.
    """

    TITLE, CLASSES, PALETTE, SPLITS = "ADE20K", ADE20K_CLASSES, ADE20K_PALETTE, SPLITS

    def find_samples(self, root: Path, split: str) -> tuple[Path, list[tuple[Path, Path]]]:
        root = find_ade20k_root(root)
        image_dir = require_dir(root / "images" / SPLITS[split], "ADE20K image folder")
        mask_dir = require_dir(root / "annotations" / SPLITS[split], "ADE20K annotation folder")
        return root, strict_pairs(image_dir, mask_dir, "ADE20K")

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """0 → ``IGNORE_INDEX``; 1..150 → 0..149; larger values are kept (and then rejected)."""
        return apply_lookup(super().encode_mask(raw, path), _TABLE)

    def expected_labels(self) -> str:
        return "0..150 (0 = other, ignored)"
