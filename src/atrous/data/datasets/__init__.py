"""Datasets by name: :func:`build_dataset` ("folder", "camvid", "voc", "cityscapes", "ade20k", "membrane",
"humanseg", "synthetic")."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

from torch.utils.data import Dataset

from ...utils.registry import Registry
from ..named import check_dataset_options, dataset_registry
from .ade20k import ADE20K
from .base import FileDataset, Transforms
from .camvid import CamVid
from .cityscapes import Cityscapes
from .folder import FolderDataset
from .humanseg import HumanSeg
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


class DatasetEntry(NamedTuple):
    """A dataset's builder ``(root, split, transforms, **options)`` and whether it reads files."""

    build: Callable[..., Dataset]
    reads_files: bool = True


_DATASETS: Registry[DatasetEntry] = dataset_registry("dataset")
_DATASETS.add("folder", DatasetEntry(_folder))
_DATASETS.add("camvid", DatasetEntry(_files(CamVid)))
_DATASETS.add("voc", DatasetEntry(_files(VOCSegmentation)))
_DATASETS.add("cityscapes", DatasetEntry(_files(Cityscapes)))
_DATASETS.add("ade20k", DatasetEntry(_files(ADE20K)))
_DATASETS.add("membrane", DatasetEntry(_files(ISBIMembrane)))
_DATASETS.add("humanseg", DatasetEntry(_files(HumanSeg)))
_DATASETS.add("synthetic", DatasetEntry(_synthetic, reads_files=False))


def list_datasets() -> list[str]:
    """Names that :func:`build_dataset` accepts."""
    return _DATASETS.names()


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
        name: one of :func:`list_datasets` (any case).
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
    build, reads_files = _DATASETS.get(name)
    check_dataset_options(_DATASETS, name, build, kwargs)
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
    "HumanSeg",
    "ISBIMembrane",
    "SyntheticShapes",
    "VOCSegmentation",
    "build_dataset",
    "list_datasets",
]
