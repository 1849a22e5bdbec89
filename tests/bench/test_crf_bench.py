"""bench/crf.py's pieces on tiny synthetic cases: the trimap band, its accuracy, the timing and the tables."""

import importlib.util
import sys
from pathlib import Path

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


def test_trimap_sums_the_reports_counts_over_images(bench):
    from atrous.metrics.boundary import trimap_counts

    mask = torch.zeros(4, 8, dtype=torch.int64)
    mask[:, 4:] = 1
    mask[0, 3] = 255
    labels = mask.clone()
    labels[:, 3] = 1  # wrong on column 3 (the ignored pixel aside), right elsewhere
    trimap = bench.Trimap(widths=(1, 8))
    trimap.update(labels, mask, ignore_index=255)
    trimap.update(labels, mask, ignore_index=255)
    hits, scored = trimap_counts(labels, mask, (1, 8), ignore_index=255)
    assert list(trimap.counted) == list(2 * scored) and list(trimap.correct) == list(2 * hits)
    assert trimap.accuracy(8) == pytest.approx((32 - 1 - 3) / 31)  # every valid pixel is near the edge


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
    trimap.update(torch.tensor([[0, 1, 1]]), torch.tensor([[0, 1, 0]]), 255)
    table = bench.accuracy_table({"none": (matrix, trimap)}, ["a", "b"]).splitlines()
    assert table[0] == "| CRF | mIoU | IoU a | IoU b | pixel acc. | trimap 2 px | trimap 4 px | trimap 8 px |"
    assert table[2] == "| none | 50.00 | 50.00 | 50.00 | 66.67 | 66.67 | 66.67 | 66.67 |"
