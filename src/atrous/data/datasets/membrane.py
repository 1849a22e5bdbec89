"""ISBI 2012 electron-microscopy membranes: the data of the U-Net paper.

Cardona et al., "An integrated micro- and macroarchitectural analysis of the Drosophila
brain by computer-assisted serial section electron microscopy", PLoS Biol 2010; the ISBI
2012 EM segmentation challenge, which U-Net won (Ronneberger et al. 2015, §4). Thirty
512×512 grayscale sections, ``root/image/N.png``, with labels ``root/label/N.png``
(0 = membrane, 255 = cell interior).

The challenge's test labels are not public, so the 30 training pairs are split here:
``train`` is sections 0–24 and ``val`` sections 25–29 (numeric order), ``all`` is every
section.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..labels import apply_label_map
from ._files import require_dir, strict_pairs
from .base import PublishedDataset

MEMBRANE_CLASSES = ["membrane", "cell"]
MEMBRANE_PALETTE = [(0, 0, 0), (255, 255, 255)]
SPLITS = {"train": slice(0, 25), "val": slice(25, 30), "all": slice(0, None)}


def _section_number(pair: tuple[Path, Path]) -> tuple[int, str]:
    stem = pair[0].stem
    return (int(stem), stem) if stem.isdigit() else (1 << 30, stem)


class ISBIMembrane(PublishedDataset):
    """ISBI 2012 membranes: class 0 membrane, class 1 cell.

    Args:
        root: the folder with ``image/`` and ``label/``.
        split: ``"train"`` (sections 0–24), ``"val"`` (25–29) or ``"all"``.
        transforms: ``(image, mask) -> (image, mask)``.
    """

    TITLE, CLASSES, PALETTE, SPLITS = "membrane", MEMBRANE_CLASSES, MEMBRANE_PALETTE, SPLITS

    def find_samples(self, root: Path, split: str) -> tuple[Path, list[tuple[Path, Path]]]:
        image_dir = require_dir(root / "image", "membrane image folder")
        mask_dir = require_dir(root / "label", "membrane label folder")
        pairs = sorted(strict_pairs(image_dir, mask_dir, "membrane"), key=_section_number)
        return root, pairs[SPLITS[split]]

    def encode_mask(self, raw: np.ndarray, path: Path) -> np.ndarray:
        """0 → 0 (membrane), 255 → 1 (cell); any other value fails the label check."""
        return apply_label_map(super().encode_mask(raw, path), {0: 0, 255: 1})

    def expected_labels(self) -> str:
        return "0 (membrane) or 255 (cell)"
