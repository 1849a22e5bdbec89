"""Turning the values stored in mask files into class indices.

Three ways a dataset's files encode classes, one helper each: a value-to-class table
(:func:`lookup_table` / :func:`apply_lookup`, such as Cityscapes' labelIds), a few
remapped values (:func:`apply_label_map`, such as ``{0: 0, 255: 1}`` for a 0/255 mask,
checked by :func:`check_label_map`), and colours (:func:`colors_to_index`). Then
:func:`invalid_labels` finds what is left outside ``0..num_classes-1`` and the ignore label.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .constants import IGNORE_INDEX
from .errors import MaskValueError

_MAX_LISTED = 12
# The largest value a mask file stores: 16-bit masks keep their values (io.read_raw_mask).
# A larger label_map key could match nothing, and would size the lookup table by it.
MAX_MASK_VALUE = 65535
_DIGITS = re.compile(r"-?[0-9]+")


def _integer(value: Any) -> int | None:
    """``value`` as an int: an integer, or an integer written as text (``"255"``); else ``None``.

    Text is accepted because JSON keys are always strings (``{"0": 0, "255": 1}``) and a
    quoted YAML key is one; a float or ``True`` is not an integer here.
    """
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        return int(text) if _DIGITS.fullmatch(text) else None
    try:
        return operator.index(value)  # int, numpy integers
    except TypeError:
        return None


def check_label_map(label_map: Any, num_classes: int, *, name: str = "label_map") -> dict[int, int]:
    """``label_map`` as ``{stored_value: class_index}`` integers, or a one-line error naming the bad entry.

    Keys are values a mask file stores, ``0..65535`` (8- or 16-bit masks); values are classes
    ``0..num_classes-1`` or ``255`` (ignore). Integers written as text (``"255"``, as JSON
    writes every key) are converted.

    Raises:
        ValueError: not a mapping; a key or value that is not such an integer; a stored
            value listed twice (``255`` and ``"255"``).
    """
    if not isinstance(label_map, Mapping):
        raise ValueError(
            f"{name} must be a mapping {{stored_value: class_index}} such as {{0: 0, 255: 1}}, got {label_map!r}"
        )
    classes_ok = isinstance(num_classes, int) and not isinstance(num_classes, bool)
    result: dict[int, int] = {}
    for key, value in label_map.items():
        entry = f"{name} entry {{{key!r}: {value!r}}}"
        stored = _integer(key)
        if stored is None or not 0 <= stored <= MAX_MASK_VALUE:
            raise ValueError(
                f"{entry}: the stored value must be an integer 0..{MAX_MASK_VALUE} "
                f"(mask files hold 8- or 16-bit values), got {key!r}"
            )
        label = _integer(value)
        if label is None or (classes_ok and not (0 <= label < num_classes or label == IGNORE_INDEX)):
            allowed = f"0..{num_classes - 1} (num_classes={num_classes}) or " if classes_ok else ""
            raise ValueError(f"{entry}: the class must be an integer {allowed}{IGNORE_INDEX} (ignore), got {value!r}")
        if stored in result:
            raise ValueError(f"{name} lists the stored value {stored} twice: {entry} and an earlier key for {stored}")
        result[stored] = label
    return result


_HEX_COLOUR = re.compile(r"#([0-9a-fA-F]{6})")


def _colour(key: Any) -> tuple[int, int, int] | None:
    """``(r, g, b)`` from a tuple or list of three integers 0..255, ``"r,g,b"`` or ``"#rrggbb"``
    (text, because a YAML or JSON mapping key cannot be a list); else ``None``."""
    if isinstance(key, str):
        text = key.strip()
        hexed = _HEX_COLOUR.fullmatch(text)
        if hexed:
            value = int(hexed.group(1), 16)
            return (value >> 16, (value >> 8) & 255, value & 255)
        key = text.split(",")
    if not isinstance(key, tuple | list) or len(key) != 3:
        return None
    channels = [_integer(c) for c in key]
    if any(c is None or not 0 <= c <= 255 for c in channels):
        return None
    return tuple(channels)  # type: ignore[return-value]


def check_color_map(color_map: Any, num_classes: int, *, name: str = "color_map") -> dict[tuple[int, int, int], int]:
    """``color_map`` as ``{(r, g, b): class_index}``, or a one-line error naming the bad entry.

    A colour is a tuple of three integers 0..255 (the Python API) or, in a YAML or JSON
    config whose keys cannot be lists, the text ``"r,g,b"`` or ``"#rrggbb"``; a class is
    ``0..num_classes-1`` or ``255`` (ignore).

    Raises:
        ValueError: not a mapping; a colour or class that is not one; a colour listed twice.
    """
    if not isinstance(color_map, Mapping):
        raise ValueError(
            f"{name} must be a mapping {{colour: class_index}} such as {{'128,0,0': 1, '#00ff00': 2}}, "
            f"got {color_map!r}"
        )
    result: dict[tuple[int, int, int], int] = {}
    for key, value in color_map.items():
        entry = f"{name} entry {{{key!r}: {value!r}}}"
        colour = _colour(key)
        if colour is None:
            raise ValueError(f"{entry}: the colour must be three integers 0..255, as (r, g, b), 'r,g,b' or '#rrggbb'")
        label = _integer(value)
        if label is None or not (0 <= label < num_classes or label == IGNORE_INDEX):
            raise ValueError(
                f"{entry}: the class must be an integer 0..{num_classes - 1} (num_classes={num_classes}) "
                f"or {IGNORE_INDEX} (ignore), got {value!r}"
            )
        if colour in result:
            raise ValueError(f"{name} lists the colour {colour} twice: {entry} and an earlier key for it")
        result[colour] = label
    return result


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
