"""bench/crf.py's pieces on tiny synthetic cases: the trimap band, its accuracy, the timing and the tables."""

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from atrous.metrics import ConfusionMatrix

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "crf.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_crf", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


@pytest.fixture
def one_thread():
    """What comes back is checked, not speed: on a busy CPU two threads mostly wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_boundary_band_is_the_pixels_near_a_label_change(bench):
    mask = np.zeros((4, 8), np.int64)
    mask[:, 4:] = 1  # the boundary pixels are columns 3 and 4
    assert np.array_equal(np.flatnonzero(bench.boundary_band(mask, 0)[0]), [3, 4])
    assert np.array_equal(np.flatnonzero(bench.boundary_band(mask, 2)[0]), [1, 2, 3, 4, 5, 6])
    assert not bench.boundary_band(np.zeros((4, 8), np.int64), 5).any()  # no boundary, no band
    ignored = np.zeros((5, 5), np.int64)
    ignored[2, 2] = 255  # the ignore label bounds too (VOC draws its void band on boundaries)
    assert bench.boundary_band(ignored, 0).sum() == 5


def test_trimap_counts_only_valid_pixels_in_the_band(bench):
    mask = np.zeros((4, 8), np.int64)
    mask[:, 4:] = 1
    mask[0, 3] = 255
    labels = mask.copy()
    labels[:, 3] = 1  # wrong on column 3 (the ignored pixel aside), right elsewhere
    trimap = bench.Trimap(widths=(0, 10))
    trimap.update(labels, mask, ignore_index=255)
    assert trimap.counted[0] == 8  # columns 3 and 4 and (0, 2) beside the ignored (0, 3), less (0, 3)
    assert trimap.accuracy(0) == pytest.approx(5 / 8)
    assert trimap.accuracy(10) == pytest.approx((32 - 1 - 3) / 31)


def test_timing_and_tables(bench, one_thread):
    probabilities = torch.rand(3, 24, 32, generator=torch.Generator().manual_seed(0)).softmax(0)
    image = torch.randint(0, 256, (3, 24, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    timing = bench.time_crf(probabilities, image, "deeplab_v2", repeats=1)
    assert timing.build_ms > 0 and timing.iterate_ms > 0 and timing.total_ms > 0
    assert timing.reference_ms is None or timing.agreement >= 0.95  # with pydensecrf2 installed
    table = bench.timing_table([timing]).splitlines()
    assert table[0].startswith("| preset |") and table[2].startswith("| deeplab_v2 |")

    matrix = ConfusionMatrix(2)
    matrix.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 0]]))
    trimap = bench.Trimap()
    trimap.update(np.array([[0, 1, 1]]), np.array([[0, 1, 0]]), 255)
    table = bench.accuracy_table({"none": (matrix, trimap)}, ["a", "b"]).splitlines()
    assert table[0] == "| CRF | mIoU | IoU a | IoU b | pixel acc. | trimap 2 px | trimap 5 px | trimap 10 px |"
    assert table[2] == "| none | 50.00 | 50.00 | 50.00 | 66.67 | 66.67 | 66.67 | 66.67 |"
