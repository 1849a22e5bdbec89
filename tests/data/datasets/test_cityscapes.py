"""Cityscapes: the labelId → trainId table and the file layout."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.helpers import random_rgb, save

from atrous.data import Cityscapes
from atrous.data.datasets.cityscapes import LABEL_ID_TO_TRAIN_ID
from atrous.data.errors import UnmatchedFilesError


@pytest.mark.parametrize(
    ("label_id", "train_id"),
    [(7, 0), (8, 1), (11, 2), (24, 11), (26, 13), (33, 18), (0, 255), (1, 255), (9, 255), (29, 255), (255, 255)],
)
def test_table(label_id, train_id):
    assert LABEL_ID_TO_TRAIN_ID.shape == (256,)
    assert LABEL_ID_TO_TRAIN_ID[label_id] == train_id


def test_table_maps_19_classes():
    assert sorted(set(LABEL_ID_TO_TRAIN_ID.tolist()) - {255}) == list(range(19))


def test_layout_and_mapping(tmp_path):
    name = "aachen_000000_000019"
    save(tmp_path / "leftImg8bit" / "train" / "aachen" / f"{name}_leftImg8bit.png", random_rgb(2, 3))
    save(
        tmp_path / "gtFine" / "train" / "aachen" / f"{name}_gtFine_labelIds.png",
        np.array([[7, 26, 0], [33, 4, 24]], np.uint8),
    )
    ds = Cityscapes(tmp_path)
    assert ds.num_classes == 19 and ds.class_names[13] == "car"
    assert ds[0][1].tolist() == [[0, 13, 255], [18, 255, 11]]
    save(tmp_path / "leftImg8bit" / "train" / "bonn" / "bonn_000000_000019_leftImg8bit.png", random_rgb(2, 3))
    with pytest.raises(UnmatchedFilesError, match=r"bonn_000000_000019_leftImg8bit\.png"):
        Cityscapes(tmp_path)
