"""Label maps to pictures: palette PNGs, colour maps and overlays."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.constants import IGNORE_INDEX
from ..utils.atomic import atomic_write


def default_palette(num_classes: int) -> list[tuple[int, int, int]]:
    """PASCAL VOC's bit-interleaved colour map: distinct colours for any number of classes."""
    palette = []
    for i in range(num_classes):
        r = g = b = 0
        c = i
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        palette.append((r, g, b))
    return palette


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
