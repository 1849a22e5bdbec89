"""Data Science Bowl 2018 nuclei: one mask file per nucleus, read as Mask R-CNN samples.

Caicedo et al., "Nucleus segmentation across imaging experiments: the 2018 Data Science
Bowl", Nature Methods 2019 (BBBC038). Each sample is a folder ``root/<id>/`` holding
``images/<id>.png`` (RGB or RGBA; alpha is dropped, grayscale repeated) and ``masks/*.png``,
one 0/255 PNG per nucleus. One class: ``nucleus`` (label 1).

There is no official split of the copy used here (the stage-1 test set with its released
masks), so one is fixed: ids in sorted (string) order, ``val`` is the last fifth, rounded
to the nearest whole image (13 of 65), ``train`` the rest (52 of 65), ``all`` every image.
Ids are sorted, not shuffled, so the split never changes when folders are copied or listed
in another order. ``image_id`` is the position in that sorted list of all ids, the same
in every split. Entries of ``root`` that are not folders, and hidden folders, are not
samples and are passed over. Mask files are taken in natural order (``x_2`` before ``x_10``).

Bad input, case by case:

- ``root`` missing → ``FileNotFoundError`` naming it; an unknown split → ``ValueError``
  listing the valid ones; no sample folders, or a split that comes out empty →
  :class:`~atrous.data.errors.EmptyDatasetError`;
- a sample folder without ``images/`` or ``masks/`` → ``FileNotFoundError`` naming the path,
  and one without ``images/<id>.png`` → :class:`ImageReadError` naming it, both when the
  dataset is built;
- an unreadable image or mask PNG → :class:`ImageReadError` naming the file (from
  :mod:`atrous.data.io`), when the sample is loaded;
- a mask whose size differs from its image's → :class:`SizeMismatchError` naming both
  files (no mask of the real data differs, so there is nothing a resize would be right for);
- a mask holding values other than 0 and 255, or colours → :class:`MaskValueError` naming
  the file and the values (a resized or anti-aliased mask would otherwise count its grey
  edge as nucleus);
- a mask with no foreground → skipped with a :class:`SkippedInstanceWarning` naming the file.
  An image with no mask files at all is kept, with an empty target.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import torch

from ..datasets._files import IMAGE_EXTENSIONS, require_dir
from ..datasets.base import size_mismatch_message
from ..errors import EmptyDatasetError, ImageReadError, MaskValueError, SizeMismatchError
from ..io import read_image, read_raw_mask
from ..labels import format_values
from .target import InstanceDataset, InstanceTransforms, SkippedInstanceWarning, Target, instance_sample

DSB2018_CLASSES = ["background", "nucleus"]
SPLITS = ("train", "val", "all")


def _natural_key(name: str) -> list[int | str]:
    # re.split with a group alternates text and digits, so keys always compare like with like.
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def val_count(total: int) -> int:
    """Images in ``val``: a fifth of ``total`` rounded to the nearest integer (13 of 65)."""
    return (total + 2) // 5  # total / 5 is never halfway between integers


class DSB2018Nuclei(InstanceDataset):
    """DSB 2018 nuclei as Mask R-CNN samples (see :mod:`atrous.data.instances.target`).

    Args:
        root: the folder of sample folders ``<id>/images/<id>.png``, ``<id>/masks/*.png``.
        split: ``"train"`` (all but the last fifth of the sorted ids), ``"val"`` (the last
            fifth, rounded: 13 of 65) or ``"all"``.
        transforms: ``(image, target) -> (image, target)``, after decoding and checking.

    Attributes:
        ids: the sample ids of this split, sorted.
        samples: ``(image_path, [mask_path, …])`` per sample.
        class_names: ``["background", "nucleus"]``.

    Raises:
        FileNotFoundError: ``root``, or a sample's ``images/`` or ``masks/``, is missing.
        ValueError: an unknown split.
        EmptyDatasetError: no sample folders, or an empty split.
        ImageReadError: a sample folder without ``images/<id>.png``.
    """

    def __init__(self, root: str | Path, split: str = "train", transforms: InstanceTransforms | None = None) -> None:
        if split not in SPLITS:
            raise ValueError(f"dsb2018_nuclei split must be one of {SPLITS}; got {split!r}")
        root = require_dir(Path(root), "dsb2018_nuclei root folder")
        all_ids = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not all_ids:
            raise EmptyDatasetError(f"no sample folders (<id>/images/<id>.png, <id>/masks/*.png) in {root}")
        n_val = val_count(len(all_ids))
        start, stop = {"train": (0, len(all_ids) - n_val), "val": (len(all_ids) - n_val, None), "all": (0, None)}[split]
        positions = list(range(len(all_ids)))[start:stop]
        if not positions:
            raise EmptyDatasetError(
                f"the {split!r} split of {root} is empty: {len(all_ids)} sample folders, {n_val} of them for 'val'"
            )
        self.root = root
        self.split = split
        self.ids = [all_ids[i] for i in positions]
        self.image_ids = positions
        self.samples = [self._find_files(root / sample_id) for sample_id in self.ids]
        self.class_names = list(DSB2018_CLASSES)
        self.transforms = transforms

    @staticmethod
    def _find_files(folder: Path) -> tuple[Path, list[Path]]:
        image_dir = require_dir(folder / "images", "dsb2018_nuclei image folder")
        mask_dir = require_dir(folder / "masks", "dsb2018_nuclei mask folder")
        image_path = image_dir / f"{folder.name}.png"
        if not image_path.is_file():
            held = sorted(p.name for p in image_dir.iterdir())
            raise ImageReadError(f"{image_path} does not exist ({image_dir} holds: {', '.join(held[:5]) or 'nothing'})")
        masks = [
            p
            for p in mask_dir.iterdir()
            if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
        ]
        return image_path, sorted(masks, key=lambda p: _natural_key(p.name))

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> tuple[torch.Tensor, Target]:
        """Sample ``index`` decoded and checked, before ``transforms``.

        Raises:
            ImageReadError: an image or mask file that cannot be read.
            SizeMismatchError: a mask whose size is not its image's.
            MaskValueError: a mask with values other than 0 and 255.
        """
        image_path, mask_paths = self.samples[index]
        image = read_image(image_path)  # (3, H, W) uint8
        size = (int(image.shape[1]), int(image.shape[2]))
        image_id = self.image_ids[index]
        masks = []
        for path in mask_paths:
            raw = read_raw_mask(path)  # (H, W) integers, or (H, W, 3) colours
            if raw.ndim == 3:
                raise MaskValueError(f"{path} is a colour mask; a dsb2018_nuclei mask is one 0/255 channel")
            if raw.shape != size:
                raise SizeMismatchError(size_mismatch_message(image_path, size, path, raw.shape))
            foreground = raw == 255
            if not (foreground | (raw == 0)).all():
                values = np.unique(raw[~foreground & (raw != 0)])
                raise MaskValueError(f"{path} has values {format_values(values)}; expected 0 and 255 (the nucleus)")
            if not foreground.any():
                warnings.warn(
                    f"skipped mask {path}: it has no foreground (255) pixels", SkippedInstanceWarning, stacklevel=2
                )
                continue
            masks.append(foreground)
        return instance_sample(image, masks, [1] * len(masks), image_id=image_id)

    def __repr__(self) -> str:
        return f"DSB2018Nuclei(root={str(self.root)!r}, split={self.split!r}, images={len(self)})"
