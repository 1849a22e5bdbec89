"""Copy-paste augmentation for semantic segmentation: Ghiasi et al., "Simple Copy-Paste is a
Strong Data Augmentation Method for Instance Segmentation" (CVPR 2021), after Dwibedi et al.,
"Cut, Paste and Learn" (ICCV 2017).

§3 of Ghiasi et al.: two images are each augmented with random scale jittering and flipping,
the objects of one are pasted onto the other, and the labels follow; the paper reports that
smoothing the pasted edges (blending) makes no real difference, so objects are pasted as they
are.
Pasting teaches an object apart from the scene it was photographed in: with few photos a
from-scratch model otherwise learns the scenes as much as the objects.

Here the "objects" are the pixels of chosen classes (``classes``) in another *augmented*
training crop of the same size: wrap the augmented dataset, so that the donor has been
rescaled, cropped, flipped and jittered on its own draw, as the paper's two "large scale
jittered" images are. Ignored and padded pixels are never pasted (they are not in
``classes``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from ..utils.seeding import keyed_seed

COPY_PASTE_OPTIONS = ("probability", "classes")


def check_copy_paste_options(options: Any) -> None:
    """Raise ValueError unless ``options`` is ``{probability: 0 < p <= 1, classes: [...]}``,
    ``classes`` a non-empty list of distinct class indices (>= 0) or class names."""
    if not isinstance(options, dict):
        raise ValueError(f"copy_paste must be a mapping of {', '.join(COPY_PASTE_OPTIONS)}, got {options!r}")
    keys = sorted(options)
    if keys != sorted(COPY_PASTE_OPTIONS):
        raise ValueError(f"copy_paste takes exactly {', '.join(COPY_PASTE_OPTIONS)}, got {', '.join(keys) or 'none'}")
    p = options["probability"]
    if isinstance(p, bool) or not isinstance(p, int | float) or not 0 < p <= 1:
        raise ValueError(f"copy_paste.probability must be a number in (0, 1], got {p!r}")
    classes = options["classes"]
    valid = isinstance(classes, list) and classes and all(_is_class(c) for c in classes)
    if not valid or len(set(classes)) != len(classes):
        raise ValueError(
            f"copy_paste.classes must be a non-empty list of distinct class indices (>= 0) or names, got {classes!r}"
        )


def _is_class(c: Any) -> bool:
    return (isinstance(c, int) and not isinstance(c, bool) and c >= 0) or (isinstance(c, str) and bool(c.strip()))


def resolve_classes(classes: Sequence[int | str], class_names: Sequence[str]) -> list[int]:
    """Class indices of ``classes`` (indices or names of ``class_names``, names case-insensitive)."""
    lowered = [n.lower() for n in class_names]
    indices = []
    for c in classes:
        if isinstance(c, str):
            if c.lower() not in lowered:
                raise ValueError(f"copy_paste.classes: no class {c!r}; the dataset has {', '.join(class_names)}")
            indices.append(lowered.index(c.lower()))
        elif c >= len(class_names):
            raise ValueError(
                f"copy_paste.classes: class {c} is out of range; the dataset has {len(class_names)} classes"
            )
        else:
            indices.append(int(c))
    return indices


class CopyPasteDataset(Dataset):
    """Items of ``dataset`` with, with probability ``probability``, the ``classes`` pixels of
    a donor item of ``donors`` pasted on top (image and mask alike).

    Both are keyed augmented datasets of the same ``N`` samples (e.g.
    :class:`~atrous.engine.sampling.KeyedAugmentation` with two seeds) returning
    ``(image (C, H, W), mask (H, W))`` of one size. Item ``key`` draws, from a generator
    seeded by ``(seed, key)``, whether to paste and which of the ``N`` samples gives the
    donor; the donor is ``donors[(key // N) * N + d]`` — so an item is the same whenever it
    is loaded (resumable, identical in every worker) and donors come from the same epoch's
    key range.
    """

    def __init__(
        self, dataset: Dataset, donors: Dataset, *, probability: float, classes: Sequence[int], seed: int
    ) -> None:
        check_copy_paste_options({"probability": probability, "classes": list(classes)})
        if any(isinstance(c, str) for c in classes):
            raise ValueError("CopyPasteDataset takes class indices; resolve names with resolve_classes")
        if len(donors) != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"donors has {len(donors)} samples, dataset {len(dataset)}: they must be the same set")  # type: ignore[arg-type]
        self.dataset = dataset
        self.donors = donors
        self.probability = float(probability)
        self.classes = torch.tensor(list(classes), dtype=torch.int64)
        self.seed = int(seed)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: int) -> tuple[Any, Any]:
        image, mask = self.dataset[key]
        n = len(self)
        # Its own stream beside the crops' (KeyedAugmentation seeds them with key itself).
        g = torch.Generator().manual_seed(keyed_seed(self.seed, 7 * key + 3))
        if float(torch.rand((), generator=g)) >= self.probability:
            return image, mask
        donor = int(torch.randint(n, (), generator=g))
        donor_image, donor_mask = self.donors[(key // n) * n + donor]
        if donor_image.shape[-2:] != image.shape[-2:] or donor_mask.shape != mask.shape:
            raise ValueError(
                f"copy-paste needs crops of one size; got {tuple(image.shape[-2:])} and {tuple(donor_image.shape[-2:])}"
            )
        pasted = torch.isin(donor_mask, self.classes)
        return torch.where(pasted, donor_image, image), torch.where(pasted, donor_mask, mask)

    def __repr__(self) -> str:
        return (
            f"CopyPasteDataset({self.dataset!r}, probability={self.probability}, "
            f"classes={self.classes.tolist()}, seed={self.seed})"
        )
