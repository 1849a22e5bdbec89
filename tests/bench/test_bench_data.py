"""bench/data.py on a tiny synthetic set: the measurement runs and reports sane numbers."""

import importlib.util
import math
import multiprocessing
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "data.py"


@pytest.fixture(scope="module")
def bench_data():
    spec = importlib.util.spec_from_file_location("bench_data", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_measure_reports_positive_finite_numbers(bench_data, tiny_config, tmp_path):
    result = bench_data.measure(tiny_config("data.workers=1"), batches=3, train_steps=1, run_dir=tmp_path)
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
    # Nothing but the resolved config and precision was written: no eval, checkpoint or plots in the window.
    assert sorted(p.name for p in (tmp_path / "real").iterdir()) == ["config.yaml", "precision.json"]


def test_a_recipe_whose_warm_up_outlasts_the_timed_steps_still_runs(bench_data, tiny_config, tmp_path):
    """The CPU recipes warm up for 50-100 steps, more than a bench times: the config check
    (warm-up <= steps) refused them until the bench shortened the warm-up too."""
    config = tiny_config("data.workers=0", "train.steps=200", "train.warmup_steps=100")
    result = bench_data.measure(config, batches=1, train_steps=1, run_dir=tmp_path)
    assert result["train_steps"] == 1 and result["train_step_s"] > 0


def test_a_recipe_that_fits_its_schedule_to_a_budget_still_runs(bench_data, tiny_config, tmp_path):
    """configs/deeplabv3plus_resnet18_camvid_cpu.yaml sets train.fit_to_budget: the bench drops the
    time budget, and the config refuses a fitted schedule without one unless the bench drops both."""
    config = tiny_config("data.workers=0", "train.max_time_s=600", "train.fit_to_budget=true")
    result = bench_data.measure(config, batches=1, train_steps=1, run_dir=tmp_path)
    assert result["train_steps"] == 1 and result["train_step_s"] > 0


def test_a_given_recipe_keeps_its_own_crop_and_batch(bench_data, monkeypatch):
    """Only the default recipe (ResNet-50, sized for a GPU) is cut to the CPU sizes; a recipe given
    with --config was measured at 256² and batch 4 too until it restated its own with --set."""
    from atrous.config import load_config

    monkeypatch.setattr(bench_data, "data_overrides", lambda path, overrides: [])  # no CamVid needed
    recipe = SCRIPT.parents[1] / "configs" / "deeplabv3plus_mobilenetv2_camvid_cpu.yaml"
    own = load_config(recipe, bench_data.recipe_overrides(recipe, []))
    assert list(own.data.crop_size) == [288, 352] and own.data.batch_size == 8
    default = load_config(bench_data.DEFAULT_CONFIG, bench_data.recipe_overrides(bench_data.DEFAULT_CONFIG, []))
    assert list(default.data.crop_size) == [256, 256] and default.data.batch_size == 4
