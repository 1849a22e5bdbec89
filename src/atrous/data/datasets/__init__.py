"""Datasets by name: :func:`build_dataset` ("folder", "camvid", "voc", "cityscapes", "ade20k", "membrane",
"synthetic")."""

from __future__ import annotations

import difflib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from torch.utils.data import Dataset

from ...options import check_options
from .ade20k import ADE20K
from .base import FileDataset, Transforms
from .camvid import CamVid
from .cityscapes import Cityscapes
from .folder import FolderDataset
from .membrane import ISBIMembrane
from .synthetic import SyntheticShapes
from .voc import VOCSegmentation

_SYNTHETIC_SEEDS = {"train": 0, "val": 1, "test": 2}
_SYNTHETIC_SIZES = {"train": 512, "val": 64, "test": 64}


def _folder(root: Path, split: str, transforms: Transforms | None, **kwargs: Any) -> FolderDataset:
    # A split subfolder (root/train/images, root/val/images) when there is one; otherwise
    # root itself is the training set and other splits must have their own folder.
    if (root / split).is_dir():
        root = root / split
    elif split != "train":
        raise FileNotFoundError(f"no folder {root / split} for split {split!r} of the folder dataset at {root}")
    return FolderDataset(root, transforms=transforms, **kwargs)


def _synthetic(root: Path | None, split: str, transforms: Transforms | None, **kwargs: Any) -> SyntheticShapes:
    if split not in _SYNTHETIC_SEEDS:
        raise ValueError(f"synthetic split must be one of {tuple(_SYNTHETIC_SEEDS)}; got {split!r}")
    kwargs.setdefault("seed", _SYNTHETIC_SEEDS[split] * 1_000_003)  # disjoint sample streams per split
    num_samples = kwargs.pop("num_samples", _SYNTHETIC_SIZES[split])
    return SyntheticShapes(num_samples, transforms=transforms, **kwargs)


def _files(cls: type[FileDataset]) -> Callable[..., FileDataset]:
    def build(root: Path, split: str, transforms: Transforms | None, **kwargs: Any) -> FileDataset:
        return cls(root, split, transforms=transforms, **kwargs)

    return build


_DATASETS: dict[str, tuple[Callable[..., Dataset], bool]] = {  # name -> (builder, reads files)
    "folder": (_folder, True),
    "camvid": (_files(CamVid), True),
    "voc": (_files(VOCSegmentation), True),
    "cityscapes": (_files(Cityscapes), True),
    "ade20k": (_files(ADE20K), True),
    "membrane": (_files(ISBIMembrane), True),
    "synthetic": (_synthetic, False),
}


def list_datasets() -> list[str]:
    """Names that :func:`build_dataset` accepts."""
    return sorted(_DATASETS)


def build_dataset(
    name: str,
    *,
    root: str | Path | None = None,
    split: str = "train",
    transforms: Transforms | None = None,
    **kwargs: Any,
) -> Dataset:
    """Build a dataset by name.

    Args:
        name: one of :func:`list_datasets`.
        root: the dataset folder (not used by ``"synthetic"``). For ``"folder"``,
            ``root/{split}`` is used when it exists, else ``root`` for ``"train"``.
        split: ``"train"``, ``"val"``, … as the dataset defines them. For ``"synthetic"``
            the split picks the seed (and a default ``num_samples``: 512 train, 64 val/test).
        transforms: ``(image, mask) -> (image, mask)``.
        **kwargs: the dataset's own arguments (``num_classes`` for ``"folder"``, …).

    Raises:
        ValueError: an unknown name (with close names), or no ``root`` for a file dataset.
        TypeError: an argument the dataset does not take (named, with close ones and the valid ones).
        FileNotFoundError: ``root`` does not exist.
    """
    key = name.lower()
    if key not in _DATASETS:
        close = difflib.get_close_matches(key, list(_DATASETS), n=3, cutoff=0.5)
        hint = f" Did you mean: {', '.join(close)}?" if close else ""
        raise ValueError(f"unknown dataset {name!r}.{hint} Known datasets: {', '.join(list_datasets())}.")
    build, reads_files = _DATASETS[key]
    # Before building: a typo would otherwise be "FolderDataset.__init__() got an unexpected
    # keyword argument". root, split and transforms are this function's own.
    check_options(build, kwargs, what=f"dataset {key!r}", where="data.options", bound=3)
    if not reads_files:
        return build(None if root is None else Path(root), split, transforms, **kwargs)
    if root is None:
        raise ValueError(f"dataset {name!r} reads files: pass root=<the dataset folder>")
    root = Path(root)
    if not root.is_dir():
        state = "is not a folder" if root.exists() else "does not exist"
        raise FileNotFoundError(f"root folder {root} of dataset {name!r} {state}")
    return build(root, split, transforms, **kwargs)


__all__ = [
    "ADE20K",
    "CamVid",
    "Cityscapes",
    "FileDataset",
    "FolderDataset",
    "ISBIMembrane",
    "SyntheticShapes",
    "VOCSegmentation",
    "build_dataset",
    "list_datasets",
]
