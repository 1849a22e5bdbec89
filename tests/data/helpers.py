"""Tiny image files for the data tests, and the location of the real data (imported as ``tests.data.helpers``)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[2]
EXIF_ORIENTATION = 0x0112


def real_data(name: str) -> Path:
    """``$ATROUS_DATA/<name>`` (default ``<repo>/../shared/data/<name>``); skips the test when absent."""
    root = Path(os.environ.get("ATROUS_DATA", REPO_ROOT.parent / "shared" / "data"))
    folder = root / name
    if not folder.is_dir():
        pytest.skip(f"real dataset {folder} is not here (set ATROUS_DATA to the folder that holds {name}/)")
    return folder


def save(
    path: Path,
    array: np.ndarray,
    *,
    palette: list[int] | None = None,
    exif_orientation: int | None = None,
    **save_kwargs,
) -> Path:
    """Write ``array`` with Pillow (mode from the dtype and shape); ``palette`` makes a P-mode PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(array)
    if palette is not None:
        image.putpalette(palette)
    if exif_orientation is not None:
        exif = Image.Exif()
        exif[EXIF_ORIENTATION] = exif_orientation
        save_kwargs["exif"] = exif
    image.save(path, **save_kwargs)
    return path


def random_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def make_pair(root: Path, name: str, mask: np.ndarray, *, image_size: tuple[int, int] | None = None, ext=".png"):
    """Write ``root/images/<name><ext>`` (random, sized like ``mask`` unless given) and ``root/masks/<name>.png``."""
    height, width = image_size or mask.shape[:2]
    image_path = save(root / "images" / f"{name}{ext}", random_rgb(height, width, seed=len(name)))
    mask_path = save(root / "masks" / f"{name}.png", mask)
    return image_path, mask_path
