"""build_dataset: names, roots and splits."""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from tests.data.helpers import make_pair

from atrous.data import CamVid, FolderDataset, SyntheticShapes, build_dataset, list_datasets


def test_names():
    assert list_datasets() == ["ade20k", "camvid", "cityscapes", "folder", "humanseg", "membrane", "synthetic", "voc"]


def test_unknown_name_suggests_close_ones():
    with pytest.raises(ValueError, match=r"unknown dataset 'camvd'\. Did you mean: camvid\?"):
        build_dataset("camvd", root=".")


def test_missing_root_is_named(tmp_path):
    with pytest.raises(
        FileNotFoundError, match=re.escape(f"root folder {tmp_path / 'nowhere'} of dataset 'camvid' does not exist")
    ):
        build_dataset("camvid", root=tmp_path / "nowhere")
    with pytest.raises(ValueError, match="reads files: pass root="):
        build_dataset("voc")


def test_synthetic_splits_differ():
    train = build_dataset("synthetic", size=32, num_samples=3)
    val = build_dataset("synthetic", split="val", size=32)
    assert isinstance(train, SyntheticShapes) and len(train) == 3 and len(val) == 64
    assert not torch.equal(train[0][0], val[0][0])


def test_folder_with_split_subfolders(tmp_path):
    make_pair(tmp_path / "train", "a", np.zeros((3, 3), np.uint8))
    make_pair(tmp_path / "val", "b", np.zeros((3, 3), np.uint8))
    val = build_dataset("folder", root=tmp_path, split="val", num_classes=2)
    assert isinstance(val, FolderDataset) and val.samples[0][0].name == "b.png"
    with pytest.raises(FileNotFoundError, match="for split 'test'"):
        build_dataset("folder", root=tmp_path, split="test", num_classes=2)


def test_camvid_by_name(tmp_path):
    make_pair(tmp_path, "a", np.zeros((3, 3), np.uint8))
    (tmp_path / "train").symlink_to(tmp_path / "images")
    (tmp_path / "trainannot").symlink_to(tmp_path / "masks")
    assert isinstance(build_dataset("camvid", root=tmp_path), CamVid)
