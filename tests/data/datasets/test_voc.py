"""PASCAL VOC 2012 and the pre-converted SBD train_aug set on a tiny fake VOCdevkit."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.helpers import random_rgb, save

from atrous.data import VOCSegmentation
from atrous.data.datasets.voc import VOC_PALETTE
from atrous.data.errors import UnmatchedFilesError

PALETTE = [v for color in VOC_PALETTE for v in color] + [224, 224, 192] * 235  # 255 = border colour


def _voc(root, ids=("2007_000032", "2007_000039")):
    voc = root / "VOCdevkit" / "VOC2012"
    for n, i in enumerate(ids):
        save(voc / "JPEGImages" / f"{i}.jpg", random_rgb(4, 5))
        save(voc / "SegmentationClass" / f"{i}.png", np.array([[0, n + 1, 255, 0, 0]] * 4, np.uint8), palette=PALETTE)
        save(voc / "SegmentationClassAug" / f"{i}.png", np.array([[n + 5, 0, 0, 0, 0]] * 4, np.uint8))
    lists = voc / "ImageSets" / "Segmentation"
    lists.mkdir(parents=True)
    (lists / "train.txt").write_text(f"{ids[0]}\n")
    (lists / "val.txt").write_text(f"{ids[1]}\n")
    (lists / "train_aug.txt").write_text("".join(f"/JPEGImages/{i}.jpg /SegmentationClassAug/{i}.png\n" for i in ids))
    return voc


def test_palette_masks_and_root_forms(tmp_path):
    voc = _voc(tmp_path)
    for root in (tmp_path, tmp_path / "VOCdevkit", voc):
        ds = VOCSegmentation(root, "val")
        assert len(ds) == 1 and ds.num_classes == 21 and ds.class_names[15] == "person"
        assert ds[0][1][0].tolist() == [0, 2, 255, 0, 0]


def test_train_aug(tmp_path):
    _voc(tmp_path)
    ds = VOCSegmentation(tmp_path, "train_aug")
    assert [m.parent.name for _, m in ds.samples] == ["SegmentationClassAug"] * 2
    assert ds[1][1][0, 0].item() == 6


def test_missing_listed_files_are_named(tmp_path):
    voc = _voc(tmp_path)
    (voc / "ImageSets" / "Segmentation" / "train.txt").write_text("2007_000032\n2099_000001\n")
    with pytest.raises(UnmatchedFilesError, match=r"2 files listed in .*train\.txt do not exist: .*2099_000001\.jpg"):
        VOCSegmentation(tmp_path, "train")


def test_not_a_voc_root(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no VOC2012/JPEGImages"):
        VOCSegmentation(tmp_path)
