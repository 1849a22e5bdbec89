"""Datasets, paired transforms and the dataset doctor.

Datasets return ``(image uint8 (3, H, W), mask int64 (H, W))`` with every mask checked
on the CPU; ``transforms`` then make training or evaluation tensors. See
:func:`build_dataset` for the datasets by name. Instance segmentation (Mask R-CNN) has its
own samples, ``(image, target dict)``, and datasets: :mod:`atrous.data.instances`,
:func:`build_instance_dataset`.
"""

from .constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from .datasets import (
    ADE20K,
    CamVid,
    Cityscapes,
    FileDataset,
    FolderDataset,
    HumanSeg,
    ISBIMembrane,
    SyntheticShapes,
    VOCSegmentation,
    build_dataset,
    list_datasets,
)
from .doctor import DoctorReport, format_report, median_frequency_weights, scan_dataset
from .errors import (
    DatasetError,
    EmptyDatasetError,
    ImageReadError,
    MaskValueError,
    SizeMismatchError,
    UnmatchedFilesError,
)
from .instances import (
    CocoInstances,
    DSB2018Nuclei,
    InstanceTrainTransforms,
    build_instance_dataset,
    collate_instances,
    list_instance_datasets,
    targets_to_coco,
)
from .io import read_image, read_mask, read_raw_mask
from .transforms import ElasticDeformation, denormalize, eval_transforms, train_transforms
from .weight_map import WeightMapDataset, unet_weight_map

__all__ = [
    "ADE20K",
    "IGNORE_INDEX",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "CamVid",
    "Cityscapes",
    "CocoInstances",
    "DSB2018Nuclei",
    "DatasetError",
    "DoctorReport",
    "ElasticDeformation",
    "EmptyDatasetError",
    "FileDataset",
    "FolderDataset",
    "HumanSeg",
    "ISBIMembrane",
    "ImageReadError",
    "InstanceTrainTransforms",
    "MaskValueError",
    "SizeMismatchError",
    "SyntheticShapes",
    "UnmatchedFilesError",
    "VOCSegmentation",
    "WeightMapDataset",
    "build_dataset",
    "build_instance_dataset",
    "collate_instances",
    "denormalize",
    "eval_transforms",
    "format_report",
    "list_datasets",
    "list_instance_datasets",
    "median_frequency_weights",
    "read_image",
    "read_mask",
    "read_raw_mask",
    "scan_dataset",
    "targets_to_coco",
    "train_transforms",
    "unet_weight_map",
]
