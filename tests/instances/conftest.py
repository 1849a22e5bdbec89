"""A tiny dataset in the dsb2018 layout, drawn here: bright discs on a dark background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def make_nuclei_folder(root: Path, count: int = 6, size: int = 64, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    for n in range(count):
        sample = root / f"img{n:02d}"
        (sample / "images").mkdir(parents=True)
        (sample / "masks").mkdir()
        image = rng.integers(0, 40, (size, size, 3)).astype(np.uint8)
        taken = np.zeros((size, size), bool)
        k = 0
        for _ in range(12):
            cy, cx, r = rng.integers(8, size - 8), rng.integers(8, size - 8), rng.integers(4, 8)
            disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            if (disc & taken).any():
                continue
            taken |= disc
            image[disc] = rng.integers(180, 255, 3)
            Image.fromarray(disc.astype(np.uint8) * 255).save(sample / "masks" / f"m{k}.png")
            k += 1
        alpha = np.full((size, size, 1), 255, np.uint8)  # RGBA, as the real data
        Image.fromarray(np.concatenate([image, alpha], axis=2)).save(sample / "images" / f"img{n:02d}.png")
    return root


@pytest.fixture
def nuclei_root(tmp_path) -> Path:
    return make_nuclei_folder(tmp_path / "nuclei")
