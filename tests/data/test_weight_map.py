"""U-Net's border weight map (§3, eq. 2): hand-computed values, class balancing, cells, ignore, errors, real data."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
from PIL import Image
from tests.data import weight_map_reference as reference
from tests.data.helpers import real_data
from torch.utils.data import DataLoader

from atrous.data import weight_map as weight_map_module
from atrous.data.constants import IGNORE_INDEX
from atrous.data.weight_map import WeightMapDataset, connected_components, two_nearest_cells, unet_weight_map


def _two_squares() -> np.ndarray:
    """12×12: cell A at rows 2..9, cols 1..5 and cell B at rows 2..9, cols 7..10; column 6 is a 1-pixel gap."""
    mask = np.zeros((12, 12), dtype=np.int64)
    mask[2:10, 1:6] = 1
    mask[2:10, 7:11] = 1
    return mask


def _expected(d1: float, d2: float, w0: float = 10.0, sigma: float = 5.0) -> float:
    return 1.0 + w0 * math.exp(-((d1 + d2) ** 2) / (2 * sigma**2))


def test_hand_computed_values_of_two_squares():
    weight = unet_weight_map(_two_squares(), w0=10.0, sigma=5.0, class_weights=None)
    assert weight.shape == (12, 12) and weight.dtype == np.float32
    cases = {
        (5, 6): (1.0, 1.0),  # in the gap: one pixel from each cell
        (0, 6): (math.sqrt(5), math.sqrt(5)),  # above the gap: to (2, 5) and (2, 7)
        (5, 0): (1.0, 7.0),  # left of A: A at (5, 1), B at (5, 7)
        (11, 11): (math.sqrt(5), math.sqrt(40)),  # corner: B at (9, 10), A at (9, 5)
    }
    for (y, x), (d1, d2) in cases.items():
        assert weight[y, x] == pytest.approx(_expected(d1, d2), rel=1e-6), (y, x)
    # Inside the cells only w_c, here 1.
    assert np.all(weight[_two_squares() == 1] == 1.0)


def test_border_term_vanishes_beyond_the_cutoff():
    mask = np.zeros((5, 40), dtype=np.int64)
    mask[:, :3] = 1
    mask[:, -3:] = 1
    # σ = 1: the cells are 34 pixels apart, beyond 6σ; the term is ~e^-578 anyway.
    weight = unet_weight_map(mask, sigma=1.0, class_weights=None)
    assert np.all(weight == 1.0)


def test_two_nearest_cells_matches_brute_force():
    rng = np.random.default_rng(0)
    for trial in range(8):
        height, width = (int(v) for v in rng.integers(4, 24, 2))
        cells = np.where(rng.random((height, width)) < 0.1, rng.integers(1, 6, (height, width)), 0)
        ys, xs = np.mgrid[:height, :width]
        per_cell = []
        for c in np.unique(cells[cells > 0]):
            py, px = np.nonzero(cells == c)
            per_cell.append(((ys[..., None] - py) ** 2 + (xs[..., None] - px) ** 2).min(-1))
        per_cell.append(np.full((height, width), 10**6))  # a sentinel "farther than anything"
        per_cell.append(np.full((height, width), 10**6))
        true1, true2 = np.sort(np.stack(per_cell), 0)[:2]
        radius = int(rng.integers(2, 30))
        d1, d2 = two_nearest_cells(cells, radius)
        for true, got in ((true1, d1), (true2, d2)):
            within = true <= radius**2
            assert np.array_equal(got[within], true[within]), trial
            assert np.all(got[~within] > radius**2), trial


def test_connected_components_are_four_connected_regions_of_one_label():
    labels = np.array(
        [
            [1, 1, 0, 2],
            [0, 1, 0, 2],
            [1, 0, 1, 1],
            [1, 2, 2, 1],
        ]
    )
    expected = np.array(
        [
            [1, 1, 0, 2],
            [0, 1, 0, 2],
            [3, 0, 4, 4],
            [3, 5, 5, 4],
        ]
    )
    assert np.array_equal(connected_components(labels), expected)
    # A long snake needs many propagation steps but few union-find rounds.
    snake = np.zeros((41, 41), dtype=np.int64)
    snake[::2, :] = 1
    snake[1::4, -1] = 1
    snake[3::4, 0] = 1
    assert np.array_equal(connected_components(snake), snake.astype(np.int32))


def test_balanced_class_weights_average_one_and_invert_frequency():
    mask = np.zeros((4, 4), dtype=np.int64)
    mask[0] = 1  # 4 pixels of class 1, 12 of class 0
    weight = unet_weight_map(mask, w0=0.0)
    assert weight.mean() == pytest.approx(1.0)
    assert weight[0, 0] == pytest.approx(16 / (2 * 4)) and weight[3, 3] == pytest.approx(16 / (2 * 12))
    # Ignored pixels weigh 0 and count in no frequency.
    mask[3] = IGNORE_INDEX
    weight = unet_weight_map(mask, w0=0.0)
    assert np.all(weight[3] == 0)
    assert weight[:3].mean() == pytest.approx(1.0)
    assert weight[0, 0] / weight[1, 0] == pytest.approx(2.0)
    # Given weights are looked up by class.
    weight = unet_weight_map(mask, w0=0.0, class_weights=[0.5, 3.0])
    assert weight[0, 0] == 3.0 and weight[1, 0] == 0.5 and weight[3, 0] == 0.0


def test_border_term_is_added_to_the_class_weight_on_background_only():
    mask = _two_squares()
    balanced = unet_weight_map(mask)
    plain = unet_weight_map(mask, class_weights=None)
    w_c = unet_weight_map(mask, w0=0.0)
    background = mask == 0
    np.testing.assert_allclose(balanced[background] - w_c[background], plain[background] - 1.0, rtol=1e-5)
    assert np.array_equal(balanced[~background], w_c[~background])


def test_instances_and_label_masks():
    mask = _two_squares()
    instances = mask.copy()
    instances[:, 7:] *= 2  # ids 1 and 2
    from_labels = unet_weight_map(mask)
    assert np.array_equal(unet_weight_map(mask, instances=instances), from_labels)
    assert np.array_equal(unet_weight_map(None, instances=instances), from_labels)
    assert np.array_equal(unet_weight_map(torch.from_numpy(mask)), from_labels)
    # One instance id over both squares is one cell: no second cell, no border term.
    assert np.array_equal(unet_weight_map(mask, instances=mask), unet_weight_map(mask, w0=0.0))
    # Touching cells are told apart only by their instance ids.
    touching = np.zeros((6, 8), dtype=np.int64)
    touching[1:5, 1:7] = 1
    ids = touching.copy()
    ids[:, 4:] *= 2
    assert np.array_equal(unet_weight_map(touching, class_weights=None), unet_weight_map(touching, w0=0.0))
    split = unet_weight_map(touching, instances=ids, class_weights=None)
    assert split[0, 3] == pytest.approx(_expected(1.0, math.sqrt(2)), rel=1e-6)
    # In a label mask, regions of two different labels are two cells even where they touch.
    two_labels = touching.copy()
    two_labels[:, 4:] *= 2
    assert np.array_equal(unet_weight_map(two_labels, class_weights=None), split)


def test_ignored_pixels_weigh_zero_and_are_no_cell():
    mask = _two_squares()
    mask[2:10, 7:11] = IGNORE_INDEX  # cell B is unlabelled
    weight = unet_weight_map(mask, class_weights=None)
    assert np.all(weight[mask == IGNORE_INDEX] == 0)
    # Only cell A is left: no second cell, so no border term anywhere.
    assert np.all(weight[mask != IGNORE_INDEX] == 1.0)


def test_bad_input_errors_name_the_argument():
    mask = _two_squares()
    for kwargs, match in (
        ({"sigma": -1.0}, "sigma"),
        ({"sigma": 0.0}, "sigma"),
        ({"w0": float("nan")}, "w0"),
        ({"class_weights": "inverse"}, "class_weights"),
        ({"class_weights": [1.0]}, "class_weights has 1 entries but the mask has label 1"),
        ({"class_weights": [1.0, -1.0]}, "class_weights"),
        ({"instances": -mask}, "instances"),
        ({"instances": mask[:5]}, "instances shape"),
    ):
        with pytest.raises(ValueError, match=match):
            unet_weight_map(mask, **kwargs)
    with pytest.raises(ValueError, match=r"mask must be 2-D"):
        unet_weight_map(mask[None])
    with pytest.raises(ValueError, match="mask must hold integers"):
        unet_weight_map(mask.astype(np.float32))
    with pytest.raises(ValueError, match="neither"):
        unet_weight_map(None)
    with pytest.raises(TypeError, match="mask"):
        unet_weight_map([[0, 1]])


def test_weight_map_dataset_adds_the_weight_of_each_mask():
    masks = [torch.from_numpy(_two_squares()), torch.from_numpy(np.rot90(_two_squares()).copy())]
    masks[1][0, :3] = IGNORE_INDEX
    samples = [(torch.zeros(3, 12, 12, dtype=torch.uint8), m) for m in masks]
    dataset = WeightMapDataset(samples, sigma=3.0, class_weights=None)
    assert len(dataset) == 2
    _, mask, weight = dataset[1]
    assert mask is masks[1] and weight.dtype == torch.float32 and weight.shape == (12, 12)
    np.testing.assert_array_equal(weight.numpy(), unet_weight_map(masks[1], sigma=3.0, class_weights=None))
    images, batch_masks, weights = next(iter(DataLoader(dataset, batch_size=2)))
    assert images.shape == (2, 3, 12, 12) and batch_masks.shape == weights.shape == (2, 12, 12)
    with pytest.raises(ValueError, match=r"unknown options.*'sigmas'"):
        WeightMapDataset(samples, sigmas=3.0)
    with pytest.raises(ValueError, match="sigma"):
        WeightMapDataset(samples, sigma=-3.0)


def test_real_membrane_mask():
    folder = real_data("membrane")
    raw = np.array(Image.open(folder / "label" / "0.png"))
    mask = (raw > 127).astype(np.int64)  # 1 = cell interior, 0 = membrane (the border class)
    start = time.perf_counter()
    weight = unet_weight_map(mask)
    elapsed = time.perf_counter() - start
    assert weight.shape == (512, 512) and np.isfinite(weight).all()
    w_c = unet_weight_map(mask, w0=0.0)
    border = weight - w_c
    # The border term lives on the membranes, is at most w0 and reaches several times w_c there.
    assert np.all(border[mask == 1] == 0) and border.max() <= 10.0 and border.max() > 5.0
    assert np.median(border[mask == 0]) > 1.0
    assert elapsed < 10.0  # ~0.3 s on one core; generous for shared machines


def _reference_weight_map(monkeypatch, mask, **kwargs) -> np.ndarray:
    """The weight map computed with the hand-written NumPy cells and distances of before."""
    with monkeypatch.context() as patch:
        patch.setattr(weight_map_module, "connected_components", reference.connected_components)
        patch.setattr(weight_map_module, "two_nearest_cells", reference.two_nearest_cells)
        return unet_weight_map(mask, **kwargs)


def test_scipy_cells_and_distances_equal_the_hand_written_ones(monkeypatch):
    rng = np.random.default_rng(3)
    for trial in range(6):
        height, width = (int(v) for v in rng.integers(8, 40, 2))
        blobs = rng.random((height, width)) < 0.35
        mask = np.where(blobs, rng.integers(1, 4, (height, width)), 0)  # several classes touching
        np.testing.assert_array_equal(connected_components(mask), reference.connected_components(mask))
        cells = connected_components(mask)
        for radius in (2, 5, 50):
            d1, d2 = two_nearest_cells(cells, radius)
            r1, r2 = reference.two_nearest_cells(cells, radius)
            background = cells == 0
            np.testing.assert_array_equal(d1[background & (r1 <= radius**2)], r1[background & (r1 <= radius**2)])
            within = np.minimum(d2, radius**2 + 1)
            np.testing.assert_array_equal(within[background], np.minimum(r2, radius**2 + 1)[background])
        for sigma in (1.0, 3.0):
            np.testing.assert_array_equal(
                unet_weight_map(mask, sigma=sigma), _reference_weight_map(monkeypatch, mask, sigma=sigma), str(trial)
            )


def test_scipy_weight_map_equals_the_hand_written_one_on_membrane_crops(monkeypatch):
    folder = real_data("membrane")
    rng = np.random.default_rng(0)
    for name in ("0.png", "7.png"):
        mask = (np.array(Image.open(folder / "label" / name)) > 127).astype(np.int64)
        y, x = (int(v) for v in rng.integers(0, 512 - 348, 2))
        crop = mask[y : y + 348, x : x + 348]
        np.testing.assert_array_equal(unet_weight_map(crop), _reference_weight_map(monkeypatch, crop), name)
