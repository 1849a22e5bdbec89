"""Instance-segmentation data for Mask R-CNN, in torchvision's detection format.

The semantic-segmentation datasets give one class-index mask per image; Mask R-CNN needs
each object apart: a mask, a box and a label per instance. The sample format, the box
convention (exclusive ``x2, y2``, as pycocotools') and why boxes always come from masks are
in :mod:`~atrous.data.instances.target`; the datasets are :class:`CocoInstances` (any
COCO-format instance JSON) and :class:`DSB2018Nuclei` (one PNG per nucleus), each module
saying how it treats bad input: broken files and missing images are errors that name the
file when the dataset is built; empty masks and annotations outside their image are
skipped with a :class:`SkippedInstanceWarning` that names them. Then
:class:`InstanceTrainTransforms` (flips and rescaling, instance-aware),
:func:`collate_instances` for the DataLoader, and :func:`targets_to_coco` to turn targets
into pycocotools ground truth for mask AP.

Datasets by name: :func:`build_instance_dataset` (``"coco"``, ``"dsb2018_nuclei"``), apart
from :func:`atrous.data.build_dataset`, whose datasets give ``(image, mask)`` pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...utils.registry import Registry
from ..datasets._files import require_dir
from ..named import check_dataset_options, dataset_registry
from .coco import CocoInstances, read_coco_json, targets_to_coco
from .dsb2018 import DSB2018Nuclei
from .target import (
    InstanceDataset,
    InstanceTransforms,
    SkippedInstanceWarning,
    Target,
    collate_instances,
    empty_target,
    make_target,
    masks_to_boxes,
)
from .transforms import InstanceTrainTransforms


def _coco(root: Path, split: str, transforms: InstanceTransforms | None) -> CocoInstances:
    # The layout of the COCO 2017 download: root/train2017/*.jpg, root/annotations/instances_train2017.json.
    return CocoInstances(root / f"{split}2017", root / "annotations" / f"instances_{split}2017.json", transforms)


_INSTANCE_DATASETS: Registry[Callable[..., InstanceDataset]] = dataset_registry("instance dataset")
_INSTANCE_DATASETS.add("coco", _coco)
_INSTANCE_DATASETS.add("dsb2018_nuclei", DSB2018Nuclei)


def list_instance_datasets() -> list[str]:
    """Names that :func:`build_instance_dataset` accepts."""
    return _INSTANCE_DATASETS.names()


def build_instance_dataset(
    name: str,
    *,
    root: str | Path,
    split: str = "train",
    transforms: InstanceTransforms | None = None,
    **options: Any,
) -> InstanceDataset:
    """Build an instance-segmentation dataset by name.

    Args:
        name: ``"dsb2018_nuclei"`` (``root/<id>/images``, ``root/<id>/masks``; splits
            ``train``, ``val``, ``all``) or ``"coco"`` (the COCO 2017 layout:
            ``root/<split>2017/`` and ``root/annotations/instances_<split>2017.json``; for
            another layout build :class:`CocoInstances` directly).
        root: the dataset folder.
        split: as the dataset defines them.
        transforms: ``(image, target) -> (image, target)``.
        **options: the dataset's own arguments (``data.options`` in a recipe); neither
            dataset has any today, so any is an error that says so.

    Raises:
        ValueError: an unknown name (with close names).
        TypeError: an option the dataset does not take.
        FileNotFoundError: ``root`` does not exist.
    """
    build = _INSTANCE_DATASETS.get(name)
    check_dataset_options(_INSTANCE_DATASETS, name, build, options)
    return build(require_dir(Path(root), f"root folder of dataset {name!r}"), split, transforms, **options)


__all__ = [
    "CocoInstances",
    "DSB2018Nuclei",
    "InstanceDataset",
    "InstanceTrainTransforms",
    "InstanceTransforms",
    "SkippedInstanceWarning",
    "Target",
    "build_instance_dataset",
    "collate_instances",
    "empty_target",
    "list_instance_datasets",
    "make_target",
    "masks_to_boxes",
    "read_coco_json",
    "targets_to_coco",
]
