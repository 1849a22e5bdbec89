"""bench/data.py on a tiny synthetic set: the measurement runs and reports sane numbers."""

import importlib.util
import math
import multiprocessing
from pathlib import Path

import pytest

from atrous.config import load_config

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "data.py"


@pytest.fixture(scope="module")
def bench_data():
    spec = importlib.util.spec_from_file_location("bench_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _tiny_config(*overrides: str):
    """DeepLab v3 (ResNet-18) on 32×32 synthetic shapes, as tests/engine/conftest.py's tiny_config."""
    base = [
        "model.name=deeplabv3_resnet18",
        "data.dataset=synthetic",
        "data.options={size: 32, num_classes: 3}",
        "data.train_options={num_samples: 16, seed: 0}",
        "data.val_options={num_samples: 4, seed: 1}",
        "data.crop_size=[32, 32]",
        "data.batch_size=4",
        "data.val_batch_size=2",
        "data.workers=1",
        "train.progress=false",
        "train.amp=off",
    ]
    return load_config(None, [*base, *overrides])


def test_measure_reports_positive_finite_numbers(bench_data, tmp_path):
    result = bench_data.measure(_tiny_config(), batches=3, train_steps=1, run_dir=tmp_path)
    assert result["workers"] == 1
    assert result["batch_size"] == 4
    assert result["loader_batches"] == 3
    assert result["train_steps"] == 1
    assert result["autocast"] == "off"
    for key in (
        "loader_img_s",
        "loader_first_batch_s",
        "train_img_s",
        "train_step_s",
        "ratio",
        "real_steps_per_s",
        "real_img_s",
    ):
        assert math.isfinite(result[key]) and result[key] > 0, key
    assert 0.0 <= result["data_wait_fraction"] <= 1.0
    assert result["meets_target"] == (result["ratio"] >= result["target_ratio"])
    assert "loader alone" in bench_data.format_table(result)
    # The Trainers' loaders were released: no worker process outlives the measurement.
    assert not multiprocessing.active_children()
    # Nothing but the resolved config was written: no eval, checkpoint or plots in the window.
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["config.yaml"]
