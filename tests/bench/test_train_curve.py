"""bench/train_curve.py on a tiny synthetic set: three curves, hashes and a verdict come back."""

import importlib.util
import json
import math
import multiprocessing
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "train_curve.py"
STEPS = 3


@pytest.fixture(scope="module")
def train_curve():
    spec = importlib.util.spec_from_file_location("bench_train_curve", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def one_thread():
    """The test checks what comes back, not speed: on a busy CPU, a tiny model's steps on two
    threads spend most of their time waiting for each other (about 10× slower here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def test_moving_average_is_trailing_and_keeps_the_length(train_curve):
    assert train_curve.moving_average([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]
    assert train_curve.moving_average([2.0, 4.0], 5) == [2.0, 3.0]


def test_compare_runs_three_curves_and_a_verdict(train_curve, tiny_config, tmp_path, one_thread):
    result = train_curve.compare(tiny_config("train.seed=3"), steps=STEPS, window=2, run_dir=tmp_path)
    runs = result["runs"]
    assert list(runs) == ["fp32", "fast", "fp32_seed+1"]
    for run in runs.values():
        assert len(run["loss"]) == len(run["smoothed"]) == STEPS
        assert all(math.isfinite(v) for v in run["loss"] + run["smoothed"])
        assert run["step_s"] > 0 and run["first_step_s"] > 0
        assert run["batches"] == STEPS
    assert [runs[n]["seed"] for n in runs] == [3, 3, 4]
    assert (runs["fp32"]["amp"], runs["fp32"]["channels_last"]) == ("off", False)
    assert runs["fast"]["channels_last"] is True
    # Same seed: same initial weights and batches whatever the precision; another seed: neither.
    assert result["same_init_ab"] and result["same_batches_ab"]
    assert result["other_init_c"] and result["other_batches_c"]
    ab, ac = result["mean_abs_ab"], result["mean_abs_ac"]
    assert ab == pytest.approx(train_curve.mean_abs_diff(runs["fp32"]["smoothed"], runs["fast"]["smoothed"]))
    assert ac > 0 and math.isfinite(ab)
    assert result["ratio"] == pytest.approx(ab / ac)
    assert result["within_noise"] == (ab <= ac)
    assert result["speedup"] == pytest.approx(runs["fp32"]["step_s"] / runs["fast"]["step_s"])
    table = train_curve.format_table(result)
    assert ("PASS" if result["within_noise"] else "FAIL") in table
    json.dumps(train_curve._rounded(result))
    assert not multiprocessing.active_children()
    # Stopped before the last step's evaluation and checkpoint: only the config, precision and the log.
    assert sorted(p.name for p in (tmp_path / "fast").iterdir()) == ["config.yaml", "metrics.jsonl", "precision.json"]


def test_a_recipe_that_fits_its_schedule_to_a_budget_is_accepted(train_curve, tiny_config):
    """The bench drops the time budget; a recipe with train.fit_to_budget (the CPU CamVid ResNet-18
    one) was refused by the config check until the bench dropped the fitted schedule with it."""
    from atrous.config import validate_config

    config = tiny_config("train.max_time_s=600", "train.fit_to_budget=true")
    run = train_curve._run_config(config, steps=STEPS, amp="off", channels_last=False, seed=0)
    assert validate_config(run).train.max_time_s is None and not run.train.fit_to_budget
