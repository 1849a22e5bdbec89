"""CamVid: layout, 11 → ignore, bad labels named; two real files when the data is here."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.helpers import random_rgb, real_data, save

from atrous.data import CamVid
from atrous.data.errors import EmptyDatasetError, MaskValueError, UnmatchedFilesError


def _camvid(root, labels: dict[str, np.ndarray], split="train"):
    for name, mask in labels.items():
        save(root / split / f"{name}.png", random_rgb(*mask.shape))
        save(root / f"{split}annot" / f"{name}.png", mask)
    return root


def test_void_becomes_ignore(tmp_path):
    _camvid(tmp_path, {"0001TP_006690": np.array([[0, 10, 11]], np.uint8)})
    ds = CamVid(tmp_path)
    assert ds.num_classes == 11 and ds.class_names[3] == "Road" and ds.palette[3] == (128, 64, 128)
    assert ds[0][1].tolist() == [[0, 10, 255]]


def test_bad_labels_are_named(tmp_path):
    _camvid(tmp_path, {"0001TP_006690": np.array([[0, 14, 17]], np.uint8)})
    with pytest.raises(MaskValueError, match=r"trainannot/0001TP_006690\.png has labels \{14, 17\}; expected 0\.\.10"):
        CamVid(tmp_path)[0]


def test_layout_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"CamVid val image folder .*val does not exist"):
        CamVid(tmp_path, "val")
    (tmp_path / "val").mkdir()
    (tmp_path / "valannot").mkdir()
    with pytest.raises(EmptyDatasetError, match=r"no CamVid images in .*val"):
        CamVid(tmp_path, "val")
    _camvid(tmp_path, {"a": np.zeros((2, 2), np.uint8)})
    save(tmp_path / "train" / "b.png", random_rgb(2, 2))
    with pytest.raises(UnmatchedFilesError, match=r"b\.png"):
        CamVid(tmp_path)
    with pytest.raises(ValueError, match="split must be one of"):
        CamVid(tmp_path, "training")


def test_real_camvid_train_files():
    ds = CamVid(real_data("camvid"), "train")
    assert len(ds) > 2
    for index in (0, 1):
        image, mask = ds[index]
        assert image.shape == (3, 360, 480) and mask.shape == (360, 480)
        assert set(mask.unique().tolist()) <= set(range(11)) | {255}
