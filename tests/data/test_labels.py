"""Stored mask values → class indices."""

from __future__ import annotations

import numpy as np
import pytest

from atrous.data.constants import IGNORE_INDEX
from atrous.data.errors import MaskValueError
from atrous.data.labels import (
    apply_label_map,
    apply_lookup,
    colors_to_index,
    format_values,
    invalid_labels,
    lookup_table,
)


def test_label_map_keeps_unlisted_values():
    raw = np.array([[0, 255, 7]], dtype=np.uint8)
    assert apply_label_map(raw, {0: 0, 255: 1}).tolist() == [[0, 1, 7]]
    assert apply_label_map(raw, {0: 0, 255: 1}, default=IGNORE_INDEX).tolist() == [[0, 1, 255]]


def test_lookup_beyond_the_table_for_16_bit_values():
    table = lookup_table({3: 0}, default=IGNORE_INDEX)
    raw = np.array([3, 300, 65535], dtype=np.uint16)
    assert apply_lookup(raw, table, default=IGNORE_INDEX).tolist() == [0, 255, 255]
    assert apply_lookup(raw, lookup_table({3: 0})).tolist() == [0, 300, 65535]


def test_colors_to_index_and_gray_input():
    rgb = np.array([[[10, 20, 30], [0, 0, 0]]], dtype=np.uint8)
    assert colors_to_index(rgb, {(0, 0, 0): 0, (10, 20, 30): 4}).tolist() == [[4, 0]]
    gray = np.array([[128, 0]], dtype=np.uint8)
    assert colors_to_index(gray, {(128, 128, 128): 1, (0, 0, 0): 0}).tolist() == [[1, 0]]
    with pytest.raises(MaskValueError, match=r"m\.png has colours that are not in color_map: \(10, 20, 30\)"):
        colors_to_index(rgb, {(0, 0, 0): 0}, "m.png")


def test_invalid_labels_and_message_format():
    mask = np.array([0, 2, 3, 255, -1])
    assert invalid_labels(mask, 3).tolist() == [False, False, True, False, True]
    assert format_values([17, 14]) == "{14, 17}"
    assert format_values(range(30)).endswith(", … 18 more}")
