"""train.fit_to_budget: the fit worked out by hand, and a run on a simulated clock (one
second per step, so no figure here depends on this machine's speed): the schedule shortened
at step 60, the learning rate annealed to 0 at the fitted end, the decision recorded, and a
resumed run ending bit for bit where the uninterrupted one did."""

from __future__ import annotations

import json
import os
import signal
import types

import pytest
import torch

from atrous.config import ConfigError, load_config
from atrous.engine import trainer as trainer_module
from atrous.engine.budget import EVAL_RESERVE, FIT_SKIP, FIT_WINDOW, BudgetFitter, fitted_steps
from atrous.engine.checkpoint import load_training_checkpoint
from atrous.engine.optim import poly_lambda
from atrous.engine.trainer import Trainer, TrainingInterrupted


def test_fitted_steps_by_hand():
    # 1740 s budget, 5 % kept: 1653 s; 15 s spent by step 60; 1638 s at 2 steps/s = 3276 more.
    assert EVAL_RESERVE == 0.05
    assert fitted_steps(5600, 60, 15.0, 2.0, 1740.0) == 60 + 3276
    assert fitted_steps(5600, 60, 15.0, 4.0, 1740.0) == 5600  # the budget holds the recipe: never longer
    assert fitted_steps(5600, 60, 2000.0, 4.0, 1740.0) == 61  # the budget is spent: one more step


def test_the_fitter_times_its_window_of_steps():
    fitter = BudgetFitter(start_step=100, planned_steps=1000, max_time_s=200.0)
    assert (fitter.measure_from, fitter.measure_to) == (100 + FIT_SKIP, 100 + FIT_SKIP + FIT_WINDOW)
    fits = [fitter.observe(step, now=0.5 * step, elapsed_s=0.5 * (step - 100)) for step in range(101, 161)]
    assert fits[:-1] == [None] * 59
    fit = fits[-1]
    assert fit.steps_per_s == 2.0  # 50 steps in 25 s
    assert fit.elapsed_s == 30.0 and fit.steps == 160 + (190 - 30) * 2 == 480  # 5 % of 200 s kept
    assert BudgetFitter.applies(0, FIT_SKIP + FIT_WINDOW + 1) and not BudgetFitter.applies(0, FIT_SKIP + FIT_WINDOW)


def test_fit_to_budget_needs_a_budget():
    with pytest.raises(ConfigError, match=r"train\.fit_to_budget=true fits the schedule to train\.max_time_s"):
        load_config(None, ["train.fit_to_budget=true"])
    with pytest.raises(ConfigError, match=r"train\.fit_to_budget must be true or false, got 3"):
        load_config(None, ["train.fit_to_budget=3", "train.max_time_s=10"])


SECONDS_PER_STEP = 1.0
FIT_RUN = ("train.steps=400", "train.max_time_s=80", "train.fit_to_budget=true", "train.eval_every=1000",
           "train.checkpoint_every=1000", "train.log_every=1000", "data.batch_size=2")  # fmt: skip


@pytest.fixture
def simulated_clock(monkeypatch):
    """The trainer's clock reads its own step: every step takes exactly one second."""
    trainers: list[Trainer] = []
    clock = types.SimpleNamespace(perf_counter=lambda: SECONDS_PER_STEP * trainers[-1].step)
    monkeypatch.setattr(trainer_module, "time", clock)
    return trainers


def test_a_fitted_run_anneals_within_its_budget(tiny_config, tmp_path, simulated_clock):
    trainer = Trainer(tiny_config(*FIT_RUN), tmp_path / "run")
    simulated_clock.append(trainer)
    lrs = []
    trainer.callbacks.append(lambda t, step: lrs.append(t.optimizer.param_groups[0]["lr"]))
    result = trainer.run()
    # At step 60: 50 steps in 50 s, 60 s spent, 76 − 60 = 16 s left (5 % of 80 kept): 16 more steps.
    assert result.steps == trainer.steps == 76
    record = json.loads((tmp_path / "run" / "schedule.json").read_text())
    assert record == {"fit_to_budget": True, "planned_steps": 400, "steps": 76, "steps_per_s": 1.0,
                      "measured_from": 10, "measured_to": 60, "elapsed_s": 60.0, "max_time_s": 80.0}  # fmt: skip
    # The learning rate follows the 400-step schedule up to the fit, then the 76-step one, to 0.
    before, after = poly_lambda(400), poly_lambda(76)
    expected = [0.01 * (before if step <= 60 else after)(step) for step in range(1, 77)]
    assert lrs == pytest.approx(expected, rel=1e-12) and lrs[-1] == 0.0 and len(lrs) == 76
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == [76]
    card = (tmp_path / "run" / "best" / "README.md").read_text()
    assert "- trained 76 of 76 steps" in card
    assert "- schedule fitted to the 80 s budget (`train.fit_to_budget`): 76 steps instead of 400, at the 1.00 " in card
    assert load_training_checkpoint(tmp_path / "run" / "last.pt")["schedule_fit"]["steps"] == 76


def test_a_resumed_run_keeps_its_fitted_schedule(tiny_config, tmp_path, simulated_clock):
    straight = Trainer(tiny_config(*FIT_RUN), tmp_path / "straight")
    simulated_clock.append(straight)
    straight.run()

    def stop_at(trainer, step):
        if step == 70:
            os.kill(os.getpid(), signal.SIGTERM)

    interrupted = Trainer(tiny_config(*FIT_RUN), tmp_path / "resumed", callbacks=[stop_at])
    simulated_clock.append(interrupted)
    with pytest.raises(TrainingInterrupted):
        interrupted.run()
    # Resumed at step 70 the clock of this invocation starts again; a second fit would now
    # measure steps 80-130 and choose otherwise. The recorded schedule is kept instead.
    resumed = Trainer(tiny_config(*FIT_RUN), tmp_path / "resumed", resume=True)
    simulated_clock.append(resumed)
    assert resumed.steps == 76 and resumed.schedule_fit["steps"] == 76
    assert resumed.run().steps == 76
    a = load_training_checkpoint(tmp_path / "straight" / "last.pt")["model"]
    b = load_training_checkpoint(tmp_path / "resumed" / "last.pt")["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_budget_that_holds_the_recipe_changes_nothing(tiny_config, tmp_path, simulated_clock):
    config = tiny_config(*FIT_RUN, "train.steps=65", "train.max_time_s=1000")
    trainer = Trainer(config, tmp_path / "r")
    simulated_clock.append(trainer)
    assert trainer.run().steps == 65
    assert json.loads((tmp_path / "r" / "schedule.json").read_text())["steps"] == 65
    assert "schedule fitted" not in (tmp_path / "r" / "best" / "README.md").read_text()
