"""IoU by object size: 8-connected components, object IoUs worked by hand."""

from __future__ import annotations

import numpy as np
import pytest

from atrous.metrics.objects import ObjectSizes, connected_components, object_scores, size_bucket

VOID = 255


def test_components_are_8_connected():
    snake = np.zeros((21, 21), dtype=bool)
    snake[::4, 1:-1] = True  # rows joined at alternate ends: one long path
    for i, row in enumerate(range(0, 17, 4)):
        snake[row : row + 5, 1 if i % 2 else 19] = True
    assert connected_components(snake)[1] == 1
    diagonal = np.eye(5, dtype=bool)
    assert connected_components(diagonal)[1] == 1  # corners touch: one object (4-connectivity: 5)
    assert connected_components(np.zeros((3, 3), dtype=bool))[1] == 0


def hand_case():
    target = np.zeros((20, 30), dtype=np.int64)
    pred = np.zeros_like(target)
    target[2:6, 2:6] = 1  # A, 16 px: predicted exactly, plus a 4-pixel spill in column 6
    pred[2:6, 2:7] = 1
    target[10:13, 10:13] = 1  # B, 9 px: predicted one row lower (6 shared, 3 outside)
    pred[11:14, 10:13] = 1
    target[16:18, 20:22] = 1  # C, 4 px: missed
    pred[0:2, 25:29] = 1  # a predicted blob touching no object: charged to none
    target[2:5, 15:18] = 2  # D and E, 9 px each, separated by two void columns,
    target[2:5, 18:20] = VOID
    target[2:5, 20:23] = 2
    pred[2:5, 15:23] = 2  # predicted as one blob of 24 pixels, 6 of them on void
    return pred, target


def test_object_ious_by_hand():
    pred, target = hand_case()
    scores = object_scores(pred, target, 3, ignore_index=VOID)
    found = {
        (int(c), int(a)): float(i) for c, a, i in zip(scores.classes, scores.areas, scores.ious, strict=True) if c > 0
    }
    assert found == pytest.approx(
        {
            (1, 16): 16 / 20,  # A ∪ its component = 20 pixels
            (1, 9): 6 / (9 + 3),  # B ∪ the shifted 3×3 = 12 pixels
            (1, 4): 0.0,  # C
            # D: the merged blob counts its 18 non-void pixels: 9 / (9 + 18 − 9); E likewise
            (2, 9): 0.5,
        }
    )
    assert sorted(scores.ious[scores.classes == 2].tolist()) == [0.5, 0.5]
    assert (scores.classes == 1).sum() == 3


def test_size_buckets_use_cocos_thresholds():
    assert [size_bucket(a) for a in (1, 1023, 1024, 9215, 9216, 10**6)] == [
        "small",
        "small",
        "medium",
        "medium",
        "large",
        "large",
    ]


def test_summary_counts_objects_per_size_and_class():
    pred, target = hand_case()
    sizes = ObjectSizes(3)
    sizes.add(object_scores(pred, target, 3, ignore_index=VOID))
    summary = sizes.summary(["bg", "one", "two"])
    assert summary["per_class"]["one"]["small"] == {"objects": 3, "mean_iou": pytest.approx((0.8 + 0.5 + 0) / 3)}
    assert summary["per_class"]["two"]["small"] == {"objects": 2, "mean_iou": pytest.approx(0.5)}
    assert summary["per_class"]["one"]["large"] == {"objects": 0, "mean_iou": None}
    assert summary["sizes"]["small"]["objects"] == 3 + 2 + summary["per_class"]["bg"]["small"]["objects"]
