"""Label maps to pictures: palette PNGs, colour maps and overlays."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.constants import IGNORE_INDEX
from ..data.palette import default_palette
from ..utils.atomic import atomic_write

__all__ = ["colorize", "default_palette", "overlay", "save_label_png", "save_mask_png", "save_rgb_png"]


def colorize(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> np.ndarray:
    """(H, W) labels → (H, W, 3) uint8 colours; the ignore label is black."""
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: len(palette)] = np.asarray(palette, dtype=np.uint8)
    lut[IGNORE_INDEX] = 0
    return lut[np.asarray(labels, dtype=np.int64).clip(0, 255)]


def overlay(image: np.ndarray, labels: np.ndarray, palette: Sequence[Sequence[int]], alpha: float = 0.5) -> np.ndarray:
    """Blend class colours over an (H, W, 3) uint8 image."""
    colours = colorize(labels, palette).astype(np.float32)
    blended = (1 - alpha) * image.astype(np.float32) + alpha * colours
    return blended.round().clip(0, 255).astype(np.uint8)


def save_label_png(labels: np.ndarray, palette: Sequence[Sequence[int]], path: str | os.PathLike) -> None:
    """An 8-bit palette PNG: pixel values are class indices, viewers show class colours."""
    img = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    flat = [v for colour in palette for v in colour]
    img.putpalette(flat + [0] * (768 - len(flat)))
    _save(img, Path(path))


def save_rgb_png(array: np.ndarray, path: str | os.PathLike) -> None:
    _save(Image.fromarray(array), Path(path))


def save_mask_png(mask: np.ndarray, path: str | os.PathLike) -> None:
    """A binary mask as an 8-bit grayscale PNG: 255 inside, 0 outside."""
    _save(Image.fromarray(np.where(np.asarray(mask, dtype=bool), 255, 0).astype(np.uint8), mode="L"), Path(path))


def _save(img: Image.Image, path: Path) -> None:
    atomic_write(path, lambda tmp: img.save(tmp, format="PNG"))
