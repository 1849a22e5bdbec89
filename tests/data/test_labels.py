"""Stored mask values → class indices."""

from __future__ import annotations

import numpy as np
import pytest

from atrous.data.constants import IGNORE_INDEX
from atrous.data.errors import MaskValueError
from atrous.data.labels import (
    apply_label_map,
    apply_lookup,
    check_label_map,
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


def test_check_label_map_converts_integers_written_as_text():
    # JSON keys are always strings: {"0": 0, "255": 1} means {0: 0, 255: 1}.
    assert check_label_map({"0": 0, "255": "1", 7: 255, " 3 ": np.int64(1)}, 2) == {0: 0, 255: 1, 7: 255, 3: 1}
    assert check_label_map({65535: 1}, 2) == {65535: 1}  # 16-bit masks keep their values


@pytest.mark.parametrize(
    ("label_map", "match"),
    [
        ({"abc": 1}, r"label_map entry \{'abc': 1\}: the stored value must be an integer 0\.\.65535 .*got 'abc'"),
        ({-1: 0}, r"label_map entry \{-1: 0\}: the stored value must be an integer 0\.\.65535"),
        ({"-1": 0}, r"label_map entry \{'-1': 0\}: the stored value"),
        ({65536: 1}, r"label_map entry \{65536: 1\}: the stored value must be an integer 0\.\.65535"),
        ({1.5: 1}, r"label_map entry \{1\.5: 1\}: the stored value"),
        ({True: 1}, r"label_map entry \{True: 1\}: the stored value"),
        (
            {255: 2},
            r"label_map entry \{255: 2\}: the class must be an integer 0\.\.1 \(num_classes=2\) or 255 \(ignore\)",
        ),
        ({255: "x"}, r"label_map entry \{255: 'x'\}: the class must be"),
        ({255: -1}, r"label_map entry \{255: -1\}: the class must be"),
        ({255: 1.0}, r"label_map entry \{255: 1\.0\}: the class must be"),
        ({255: 1, "255": 0}, r"label_map lists the stored value 255 twice: label_map entry \{'255': 0\}"),
        ([[0, 0], [255, 1]], r"label_map must be a mapping \{stored_value: class_index\} such as \{0: 0, 255: 1\}"),
    ],
)
def test_check_label_map_names_the_bad_entry(label_map, match):
    with pytest.raises(ValueError, match=match) as info:
        check_label_map(label_map, 2)
    assert "\n" not in str(info.value)
