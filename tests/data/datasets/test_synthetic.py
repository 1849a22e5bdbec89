"""SyntheticShapes: deterministic per (seed, index), every class appears, labels in range."""

from __future__ import annotations

import re

import pytest
import torch

from atrous.data import SyntheticShapes, train_transforms


def test_deterministic_by_seed_and_index_in_any_order():
    a = SyntheticShapes(8, size=48, seed=3)
    b = SyntheticShapes(8, size=48, seed=3)
    later = a[5]
    first = b[0]
    assert torch.equal(a[0][0], first[0]) and torch.equal(a[0][1], first[1])
    assert torch.equal(b[5][0], later[0]) and torch.equal(b[-3][1], later[1])


def test_different_index_and_seed_differ():
    ds = SyntheticShapes(4, size=48)
    assert not torch.equal(ds[0][0], ds[1][0])
    assert not torch.equal(ds[0][0], SyntheticShapes(4, size=48, seed=1)[0][0])


def test_all_classes_appear_and_values_in_range():
    ds = SyntheticShapes(6, size=(64, 80), num_classes=7)
    seen = set()
    for i in range(len(ds)):
        image, mask = ds[i]
        assert image.dtype == torch.uint8 and image.shape == (3, 64, 80)
        assert mask.dtype == torch.int64 and mask.shape == (64, 80)
        assert mask.min() >= 0 and mask.max() < 7
        seen |= set(mask.unique().tolist())
    assert seen == set(range(7))
    assert ds.class_names == ["background", "circle", "ring", "cross", "square", "triangle", "star"]
    assert len(ds.palette) == 7


def test_shapes_are_not_tiny():
    mask = SyntheticShapes(1, size=128, num_classes=2, shapes_per_image=(1, 1))[0][1]
    assert (mask == 1).sum() > 0.02 * mask.numel()


def test_transforms_and_errors():
    image, mask = SyntheticShapes(2, size=40, transforms=train_transforms(32))[1]
    assert image.shape == (3, 32, 32) and mask.shape == (32, 32)
    with pytest.raises(ValueError, match=r"2\.\.7 classes"):
        SyntheticShapes(2, num_classes=8)
    with pytest.raises(IndexError, match="out of range"):
        SyntheticShapes(2)[2]


@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"size": "abc"}, "size must be an integer or [height, width], got 'abc'"),
        ({"size": [32]}, "size must be an integer or [height, width]"),
        ({"num_classes": "3"}, "num_classes must be an integer, got '3'"),
        ({"seed": 1.5}, "seed must be an integer"),
        ({"shapes_per_image": [1, "x"]}, "shapes_per_image must be (min, max) integers"),
    ],
)
def test_options_from_a_config_are_checked_by_type(options, says):
    with pytest.raises(ValueError, match=re.escape(says)):
        SyntheticShapes(2, **options)
