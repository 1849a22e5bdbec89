"""Turning the values stored in mask files into class indices.

Three ways a dataset's files encode classes, one helper each: a value-to-class table
(:func:`lookup_table` / :func:`apply_lookup`, such as Cityscapes' labelIds), a few
remapped values (:func:`apply_label_map`, such as ``{0: 0, 255: 1}`` for a 0/255 mask),
and colours (:func:`colors_to_index`). Then :func:`invalid_labels` finds what is left
outside ``0..num_classes-1`` and the ignore label.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np

from .constants import IGNORE_INDEX
from .errors import MaskValueError

_MAX_LISTED = 12


def lookup_table(mapping: Mapping[int, int], *, default: int | None = None, size: int = 256) -> np.ndarray:
    """An ``int64`` table ``t`` with ``t[value] = class``: ``mapping`` where given, else ``default``.

    With ``default=None`` unlisted values map to themselves. ``size`` grows to fit the
    largest key.
    """
    size = max(size, max(mapping, default=-1) + 1)
    table = np.arange(size, dtype=np.int64) if default is None else np.full(size, default, dtype=np.int64)
    for value, label in mapping.items():
        if value < 0:
            raise ValueError(f"mask values are non-negative; the label map has the key {value}")
        table[value] = label
    return table


def apply_lookup(raw: np.ndarray, table: np.ndarray, *, default: int | None = None) -> np.ndarray:
    """``table[raw]`` as ``int64``; values outside the table become ``default`` (or stay, if ``None``)."""
    raw = np.asarray(raw)
    if raw.size == 0:
        return raw.astype(np.int64)
    if raw.min() >= 0 and raw.max() < len(table):
        return table[raw]
    inside = (raw >= 0) & (raw < len(table))
    out = raw.astype(np.int64) if default is None else np.full(raw.shape, default, dtype=np.int64)
    out[inside] = table[raw[inside]]
    return out


def apply_label_map(raw: np.ndarray, mapping: Mapping[int, int], *, default: int | None = None) -> np.ndarray:
    """Replace the values listed in ``mapping``; others become ``default`` (or stay, if ``None``)."""
    return apply_lookup(raw, lookup_table(mapping, default=default), default=default)


def _color_codes(rgb: np.ndarray) -> np.ndarray:
    rgb = rgb.astype(np.int32)
    return (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]


def _code_to_rgb(code: int) -> tuple[int, int, int]:
    return (code >> 16) & 255, (code >> 8) & 255, code & 255


def count_colors(rgb: np.ndarray) -> dict[tuple[int, int, int], int]:
    """Pixels per colour of an ``(H, W, 3)`` array, most frequent first."""
    codes, counts = np.unique(_color_codes(rgb), return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return {_code_to_rgb(int(codes[i])): int(counts[i]) for i in order}


def colors_to_index(
    rgb: np.ndarray, color_map: Mapping[tuple[int, int, int], int], path: str | Path = "mask"
) -> np.ndarray:
    """Map each pixel's ``(r, g, b)`` colour to its class through ``color_map``.

    Args:
        rgb: ``(H, W, 3)`` colours (an ``(H, W)`` array is taken as gray, ``r = g = b``).
        color_map: ``{(r, g, b): class_index}``.
        path: the file, for the error message.

    Raises:
        MaskValueError: some colours are not in ``color_map``; the message lists the most
            frequent ones with their pixel counts.
    """
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=2)
    keys = np.array([(r << 16) | (g << 8) | b for (r, g, b) in color_map], dtype=np.int32)
    labels = np.array(list(color_map.values()), dtype=np.int64)
    order = np.argsort(keys)
    keys, labels = keys[order], labels[order]
    codes = _color_codes(rgb)
    where = np.clip(np.searchsorted(keys, codes), 0, max(len(keys) - 1, 0))
    known = keys[where] == codes if len(keys) else np.zeros(codes.shape, dtype=bool)
    if not known.all():
        unknown = count_colors(rgb[~known])
        listed = ", ".join(f"{c} × {n} px" for c, n in list(unknown.items())[:_MAX_LISTED])
        more = f" and {len(unknown) - _MAX_LISTED} more" if len(unknown) > _MAX_LISTED else ""
        raise MaskValueError(f"{path} has colours that are not in color_map: {listed}{more}")
    return labels[where]


def invalid_labels(mask: np.ndarray, num_classes: int) -> np.ndarray:
    """Boolean array: where ``mask`` is neither a class ``0..num_classes-1`` nor ``IGNORE_INDEX``."""
    return ((mask < 0) | (mask >= num_classes)) & (mask != IGNORE_INDEX)


def format_values(values: Iterable[int]) -> str:
    """``{14, 17}``: a set of labels for a message, shortened when long."""
    values = sorted(int(v) for v in values)
    shown = ", ".join(str(v) for v in values[:_MAX_LISTED])
    more = f", … {len(values) - _MAX_LISTED} more" if len(values) > _MAX_LISTED else ""
    return "{" + shown + more + "}"
