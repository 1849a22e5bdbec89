"""ADE20K: 0 → ignore, k → k - 1."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.helpers import random_rgb, save

from atrous.data import ADE20K
from atrous.data.errors import MaskValueError


def _ade(root, mask):
    save(root / "ADEChallengeData2016" / "images" / "validation" / "ADE_val_00000001.jpg", random_rgb(*mask.shape))
    save(root / "ADEChallengeData2016" / "annotations" / "validation" / "ADE_val_00000001.png", mask)


def test_zero_is_ignored_and_classes_shift(tmp_path):
    _ade(tmp_path, np.array([[0, 1, 13, 150]], np.uint8))
    ds = ADE20K(tmp_path, "val")
    assert ds.num_classes == 150 and len(ds.class_names) == 150 and len(ds.palette) == 150
    assert ds.class_names[0] == "wall" and ds.class_names[12] == "person"
    assert ds[0][1].tolist() == [[255, 0, 12, 149]]


def test_labels_above_150_are_named(tmp_path):
    _ade(tmp_path, np.array([[0, 151]], np.uint8))
    with pytest.raises(MaskValueError, match=r"ADE_val_00000001\.png has labels \{151\}; expected 0\.\.150"):
        ADE20K(tmp_path / "ADEChallengeData2016", "val")[0]
