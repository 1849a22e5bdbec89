"""humanseg: numeric split 250 / rest, 0/255 → background/person, smaller masks resized (nearest)."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from tests.data.helpers import real_data, save

from atrous.data import HumanSeg, build_dataset
from atrous.data.errors import MaskValueError


def _humanseg(root, numbers, value=255, mask_size=(4, 6)):
    for n in numbers:
        save(root / "images" / f"{n}.png", np.full((8, 12, 3), n % 256, np.uint8))
        mask = np.zeros(mask_size, np.uint8)
        mask[:, mask_size[1] // 2 :] = value
        save(root / "masks" / f"{n}.png", mask)
    return root


def test_split_is_numeric_first_250_then_the_rest(tmp_path):
    numbers = [n for n in range(1, 301) if n % 31]  # gaps, as in the real set
    _humanseg(tmp_path, numbers)
    train, val = HumanSeg(tmp_path, "train"), HumanSeg(tmp_path, "val")
    assert [int(p[0].stem) for p in train.samples] == numbers[:250]
    assert [int(p[0].stem) for p in val.samples] == numbers[250:]
    assert len(HumanSeg(tmp_path, "all")) == len(numbers)
    image, mask = val[0]
    # A 4×6 mask on an 8×12 photo: resized by nearest neighbour, values kept.
    assert image.shape == (3, 8, 12) and mask.shape == (8, 12)
    assert mask.tolist()[0] == [0] * 6 + [1] * 6
    assert train.class_names == ["background", "person"]
    assert len(build_dataset("humanseg", root=tmp_path, split="val")) == len(numbers) - 250


def test_unknown_split_and_values_are_named(tmp_path):
    _humanseg(tmp_path, [1, 2], value=128)
    with pytest.raises(ValueError, match=r"humanseg split must be one of \('train', 'val', 'all'\); got 'test'"):
        HumanSeg(tmp_path, "test")
    with pytest.raises(MaskValueError, match=r"masks/1\.png has labels \{128\}; expected 0 \(background\) or 255"):
        HumanSeg(tmp_path, "all")[0]


def test_real_humanseg():
    root = real_data("humanseg")
    train, val = HumanSeg(root, "train"), HumanSeg(root, "val")
    assert (len(train), len(val)) == (250, 40)
    assert not {p[0] for p in train.samples} & {p[0] for p in val.samples}
    for dataset in (train, val):
        image, mask = dataset[len(dataset) - 1]
        assert image.shape[1:] == mask.shape and set(mask.unique().tolist()) <= {0, 1}
        photo = Image.open(dataset.samples[-1][0])
        assert mask.shape == (photo.height, photo.width)
