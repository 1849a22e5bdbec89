"""Results → bytes: the label map as a palette PNG, an RGB PNG, a JPEG; all in memory."""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
from PIL import Image

JPEG_QUALITY = 95  # as atrous portrait writes


def label_png(labels: np.ndarray, palette: Sequence[Sequence[int]]) -> bytes:
    """An 8-bit palette PNG: pixel value = class index, the palette = the model's colours."""
    image = Image.fromarray(np.asarray(labels, dtype=np.uint8), mode="P")
    flat = [int(v) for colour in palette for v in colour][:768]
    image.putpalette(flat + [0] * (768 - len(flat)))
    return _save(image, "PNG")


def rgb_png(array: np.ndarray) -> bytes:
    return _save(Image.fromarray(array), "PNG")


def rgb_jpeg(array: np.ndarray) -> bytes:
    return _save(Image.fromarray(array), "JPEG", quality=JPEG_QUALITY)


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()
