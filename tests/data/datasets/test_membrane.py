"""ISBI membranes: numeric split 0-24 / 25-29, 0/255 → membrane/cell, bad values named."""

from __future__ import annotations

import numpy as np
import pytest
from tests.data.helpers import real_data, save

from atrous.data import ISBIMembrane, build_dataset
from atrous.data.errors import MaskValueError


def _membrane(root, count=30, value=255):
    for i in range(count):
        image = np.full((4, 6), i, np.uint8)
        mask = np.zeros((4, 6), np.uint8)
        mask[:, 3:] = value
        save(root / "image" / f"{i}.png", image)
        save(root / "label" / f"{i}.png", mask)
    return root


def test_split_is_numeric_first_25_then_last_5(tmp_path):
    _membrane(tmp_path)
    train, val = ISBIMembrane(tmp_path, "train"), ISBIMembrane(tmp_path, "val")
    # Numeric, not lexicographic, order: "10.png" sorts before "2.png" as text.
    assert [p[0].stem for p in train.samples] == [str(i) for i in range(25)]
    assert [p[0].stem for p in val.samples] == ["25", "26", "27", "28", "29"]
    assert len(ISBIMembrane(tmp_path, "all")) == 30
    image, mask = val[0]
    assert image.shape == (3, 4, 6) and int(image[0, 0, 0]) == 25
    assert mask.tolist()[0] == [0, 0, 0, 1, 1, 1]
    assert train.class_names == ["membrane", "cell"]


def test_unknown_split_and_values_are_named(tmp_path):
    _membrane(tmp_path, count=2, value=128)
    with pytest.raises(ValueError, match=r"membrane split must be one of \('train', 'val', 'all'\); got 'test'"):
        ISBIMembrane(tmp_path, "test")
    with pytest.raises(MaskValueError, match=r"label/0\.png has labels \{128\}; expected 0 \(membrane\) or 255"):
        ISBIMembrane(tmp_path, "all")[0]


def test_real_membranes_when_present():
    root = real_data("membrane")
    ds = build_dataset("membrane", root=root, split="val")
    image, mask = ds[0]
    assert len(ds) == 5 and image.shape == (3, 512, 512)
    assert set(np.unique(mask.numpy())) == {0, 1}
    assert 0.1 < (mask == 0).float().mean().item() < 0.4  # membranes are a minority class
