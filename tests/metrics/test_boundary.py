"""Boundary IoU and trimap accuracy: worked by hand on small pictures, and against a literal
numpy transcription of the reference definitions on random label maps."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from atrous.metrics.boundary import (
    boundary_counts,
    boundary_distance,
    boundary_iou,
    boundary_region,
    trimap_band,
    trimap_counts,
)

VOID = 255


def square_case() -> tuple[torch.Tensor, torch.Tensor]:
    """A 12×12 square (class 1) in a 20×20 image, predicted one pixel to the right."""
    target = torch.zeros(20, 20, dtype=torch.int64)
    target[4:16, 4:16] = 1
    pred = torch.zeros_like(target)
    pred[4:16, 5:17] = 1
    return pred, target


def test_boundary_distance_follows_the_reference():
    assert boundary_distance(20, 20) == 1  # 0.02 · 28.3 = 0.57 → 1
    assert boundary_distance(10, 10) == 1  # 0.28 rounds to 0, but d is at least 1
    assert boundary_distance(375, 500) == 12  # 0.02 · 625 = 12.5 → 12 (Python rounds half to even)
    assert boundary_distance(1024, 2048) == 46


def test_square_shifted_by_one_pixel_by_hand():
    pred, target = square_case()
    intersection, union = boundary_counts(pred, target, 2, ignore_index=VOID)
    # Class 1, d = 1: each boundary is the square's outer ring of 12·12 − 10·10 = 44 pixels.
    # The rings share the top and bottom rows' columns 5..15 (2 × 11 = 22 pixels); the side
    # columns (4 and 15 for the truth, 5 and 16 for the prediction) never meet in rows 5..14.
    assert (intersection[1], union[1]) == (22, 44 + 44 - 22)
    # Class 0: the image frame (the border counts as outside: 4·20 − 4 = 76 pixels) plus the
    # ring just outside each square (14² − 12² = 52). The frames coincide, and the rings share
    # rows 3 and 16 over columns 4..16 (2 × 13 = 26).
    assert (intersection[0], union[0]) == (76 + 26, 2 * (76 + 52) - (76 + 26))
    assert boundary_iou(intersection, union) == pytest.approx([102 / 154, 1 / 3])
    # Mask IoU of class 1, for contrast: 132 / 156 = 0.85 — the outline is far worse.


def test_ignored_pixels_are_left_out_of_both_regions():
    pred, target = square_case()
    target[4, 4:16] = VOID  # the square's top row is void in the ground truth
    intersection, union = boundary_counts(pred, target, 2, ignore_index=VOID)
    # The truth is now rows 5..15 (11 × 12): its ring has 2·12 + 2·9 = 42 pixels. The
    # prediction's ring is still 44 pixels, but 11 of them (row 4, columns 5..15) are void,
    # leaving 33. Shared: row 15, columns 5..15 (11 pixels), and (5, 5), where the truth's new
    # top row crosses the prediction's left column.
    assert (intersection[1], union[1]) == (12, 42 + 33 - 12)


def _reference_boundary(mask: np.ndarray, d: int) -> np.ndarray:
    """boundary-iou-api's mask_to_boundary in numpy: pad one pixel of zeros, erode d times
    with a 3×3 square (cv2's default border: outside the padded array never erodes), crop,
    subtract."""
    padded = np.pad(mask.astype(bool), 1)
    for _ in range(d):
        grown = np.pad(padded, 1, constant_values=True)
        h, w = padded.shape
        padded = np.logical_and.reduce(
            [grown[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
        )
    return mask.astype(bool) & ~padded[1:-1, 1:-1]


def _reference_band(target: np.ndarray, d: int) -> np.ndarray:
    h, w = target.shape
    band = np.zeros((h, w), dtype=bool)
    for y in range(h):
        for x in range(w):
            window = target[max(0, y - d) : y + d + 1, max(0, x - d) : x + d + 1]
            band[y, x] = len(np.unique(window)) > 1
    return band


@pytest.mark.parametrize("d", [1, 2, 3])
def test_boundary_region_matches_the_reference_erosion(d):
    rng = np.random.default_rng(d)
    for _ in range(5):
        mask = rng.random((23, 31)) < 0.6
        mask[5:15, 8:25] = True  # something with an interior
        ours = boundary_region(torch.from_numpy(mask)[None], d)[0].numpy()
        assert np.array_equal(ours, _reference_boundary(mask, d))


def test_boundary_counts_match_the_reference_on_random_maps():
    rng = np.random.default_rng(0)
    num_classes = 4
    for _ in range(4):
        coarse = rng.integers(0, num_classes, (6, 8))
        target = np.kron(coarse, np.ones((6, 6), dtype=np.int64))[:33, :45]
        pred = np.where(rng.random(target.shape) < 0.15, rng.integers(0, num_classes, target.shape), target)
        target[rng.random(target.shape) < 0.05] = VOID
        d = boundary_distance(*target.shape)
        valid = target != VOID
        intersection, union = boundary_counts(torch.from_numpy(pred), torch.from_numpy(target), num_classes)
        for c in range(num_classes):
            g = _reference_boundary(target == c, d) & valid
            p = _reference_boundary(pred == c, d) & valid
            assert (intersection[c], union[c]) == ((g & p).sum(), (g | p).sum())


def test_trimap_by_hand():
    target = torch.zeros(10, 10, dtype=torch.int64)
    target[:, 5:] = 1
    pred = target.clone()
    pred[:, 5] = 0  # the first column of class 1 is wrong
    correct, scored = trimap_counts(pred, target, (1, 2), ignore_index=VOID)
    # d = 1: columns 4 and 5 (20 pixels), column 5 wrong; d = 2: columns 3..6 (40 pixels).
    assert scored.tolist() == [20, 40] and correct.tolist() == [10, 30]
    target[0, 0] = VOID  # a void pixel's neighbours join the band; the void pixel is not scored
    correct, scored = trimap_counts(pred, target, (1,), ignore_index=VOID)
    assert (correct[0], scored[0]) == (10 + 3, 20 + 3)


def test_trimap_band_matches_a_loop():
    rng = np.random.default_rng(1)
    target = np.kron(rng.integers(0, 3, (4, 5)), np.ones((5, 5), dtype=np.int64))
    target[rng.random(target.shape) < 0.03] = VOID
    for d in (1, 2, 4):
        assert np.array_equal(trimap_band(torch.from_numpy(target), d).numpy(), _reference_band(target, d))


def test_no_class_in_an_image_counts_nothing():
    target = torch.full((8, 8), VOID, dtype=torch.int64)
    intersection, union = boundary_counts(torch.zeros(8, 8, dtype=torch.int64), target, 3)
    assert intersection.tolist() == [0, 0, 0] and union.tolist() == [0, 0, 0]
    assert np.isnan(boundary_iou(intersection, union)).all()
