"""Copy-paste augmentation (Ghiasi et al. 2021): the pasted pixels, the draws and the checks,
against compositions worked out by hand."""

from __future__ import annotations

import pytest
import torch

from atrous.config import ConfigError, load_config
from atrous.data.copy_paste import CopyPasteDataset, check_copy_paste_options, resolve_classes

N = 5


class Keyed:
    """A keyed dataset whose item ``key`` is recognisable: image filled with ``key``, mask a
    fixed pattern of classes 0, 1, 2 and 255 (ignored) shifted by ``key``."""

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = offset
        self.requested: list[int] = []

    def __len__(self) -> int:
        return N

    def __getitem__(self, key: int):
        self.requested.append(key)
        image = torch.full((3, 6, 8), float(key) + self.offset)
        mask = torch.tensor([0, 1, 2, 255]).repeat(12)[: 6 * 8].view(6, 8).roll(key, dims=1)
        return image, mask


def test_pasted_pixels_are_the_donors_pixels_of_the_classes_and_nothing_else():
    base, donors = Keyed(), Keyed(offset=1000.0)
    paste = CopyPasteDataset(base, donors, probability=1.0, classes=[1, 2], seed=0)
    for key in range(3 * N):
        image, mask = paste[key]
        donor_key = donors.requested[-1]
        assert key // N * N <= donor_key < (key // N + 1) * N  # a donor from the same epoch's keys
        own_image, own_mask = Keyed()[key]
        donor_image, donor_mask = Keyed(offset=1000.0)[donor_key]
        from_donor = (donor_mask == 1) | (donor_mask == 2)  # ignored (255) and class 0 stay
        assert torch.equal(mask, torch.where(from_donor, donor_mask, own_mask))
        assert torch.equal(image, torch.where(from_donor, donor_image, own_image))
        assert from_donor.any() and (~from_donor).any()


def test_an_item_is_the_same_whenever_it_is_loaded_and_pastes_at_the_probability():
    paste = CopyPasteDataset(Keyed(), Keyed(offset=1e6), probability=0.3, classes=[1], seed=4)
    for key in (0, 7, 123):
        first, second = paste[key], paste[key]
        assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])
    keys = 2000
    pasted = sum(bool((paste[k][0] >= 1e6).any()) for k in range(keys))
    # binomial(2000, 0.3): standard deviation 20.5; 5 of them either side
    assert abs(pasted - 0.3 * keys) < 5 * (keys * 0.3 * 0.7) ** 0.5
    other_seed = CopyPasteDataset(Keyed(), Keyed(offset=1e6), probability=0.3, classes=[1], seed=5)
    assert [bool((other_seed[k][0] >= 1e6).any()) for k in range(50)] != [
        bool((paste[k][0] >= 1e6).any()) for k in range(50)
    ]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"probability": 0.5}, "takes exactly probability, classes"),
        ({"probability": 0.5, "classes": [1], "blend": True}, "takes exactly"),
        ({"probability": 0, "classes": [1]}, r"probability must be a number in \(0, 1\]"),
        ({"probability": 1.5, "classes": [1]}, "probability"),
        ({"probability": True, "classes": [1]}, "probability"),
        ({"probability": 0.5, "classes": []}, "non-empty list"),
        ({"probability": 0.5, "classes": [1, 1]}, "distinct"),
        ({"probability": 0.5, "classes": [-1]}, "class indices"),
        ({"probability": 0.5, "classes": "person"}, "list"),
        ([0.5], "mapping"),
    ],
)
def test_bad_options_are_named(options, message):
    with pytest.raises(ValueError, match=message):
        check_copy_paste_options(options)


def test_class_names_resolve_to_indices():
    assert resolve_classes(["Person", 0], ["background", "person"]) == [1, 0]
    with pytest.raises(ValueError, match="no class 'cat'; the dataset has background, person"):
        resolve_classes(["cat"], ["background", "person"])
    with pytest.raises(ValueError, match="class 2 is out of range"):
        resolve_classes([2], ["background", "person"])
    with pytest.raises(ValueError, match="resolve names"):
        CopyPasteDataset(Keyed(), Keyed(), probability=1.0, classes=["person"], seed=0)


def test_the_config_checks_copy_paste_when_loaded():
    config = load_config(None, ["data.copy_paste={probability: 0.5, classes: [person]}"])
    assert config.data.copy_paste == {"probability": 0.5, "classes": ["person"]}
    with pytest.raises(ConfigError, match=r"data\.copy_paste=.*probability must be a number"):
        load_config(None, ["data.copy_paste={probability: 2, classes: [1]}"])
    with pytest.raises(ConfigError, match="applies to semantic models only"):
        load_config(
            None,
            [
                "model.name=maskrcnn_resnet18_fpn",
                "data.dataset=dsb2018_nuclei",
                "data.copy_paste={probability: 0.5, classes: [1]}",
            ],
        )
