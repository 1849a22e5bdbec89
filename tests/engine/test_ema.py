"""train.ema: the weight average against the recursion written out by hand, in a run, in its
checkpoint and best/ model, across a resume, and in what inference loads."""

from __future__ import annotations

import os
import signal

import pytest
import torch
from torch import nn

from atrous.engine.checkpoint import load_training_checkpoint
from atrous.engine.ema import EMA_KEY, WeightAverage, ema_decay
from atrous.engine.trainer import Trainer, TrainingInterrupted
from atrous.inference import load_trained_model
from atrous.models import load_model
from atrous.utils.state_dict import load_state_dict_file


def _snapshot(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _average_by_hand(start: dict[str, torch.Tensor], steps: list[dict[str, torch.Tensor]], decay: float):
    """avg_n = d_n·avg_(n-1) + (1 − d_n)·w_n with d_n = min(decay, (1 + n) / (10 + n)), in float64;
    integer entries take the latest value."""
    avg = {k: v.double() if v.is_floating_point() else v.clone() for k, v in start.items()}
    for n, weights in enumerate(steps, start=1):
        d = min(decay, (1 + n) / (10 + n))
        for k, w in weights.items():
            avg[k] = d * avg[k] + (1 - d) * w.double() if w.is_floating_point() else w.clone()
    return avg


def _assert_close(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for k in expected:
        if expected[k].is_floating_point():
            torch.testing.assert_close(actual[k].double(), expected[k], rtol=1e-5, atol=1e-6, msg=k)
        else:
            assert torch.equal(actual[k], expected[k]), k


def test_the_decay_ramps_up_as_tensorflow_num_updates_then_holds():
    assert ema_decay(0.999, 1) == pytest.approx(2 / 11)
    assert ema_decay(0.999, 90) == pytest.approx(91 / 100)
    assert ema_decay(0.9, 80) == pytest.approx(81 / 90) and ema_decay(0.9, 81) == 0.9
    assert ema_decay(0.999, 10**6) == 0.999


def test_update_equals_the_recursion_by_hand_buffers_included():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 2, 1))
    start = _snapshot(model)
    average = WeightAverage(model, decay=0.6)
    seen = []
    for step in range(1, 16):  # the ramp reaches 0.6 at step 13: both regimes are covered
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        model.train()(torch.randn(2, 3, 8, 8))  # moves BatchNorm's running statistics and its count
        average.update(model, step)
        seen.append(_snapshot(model))
    _assert_close(_snapshot(average.module), _average_by_hand(start, seen, 0.6))
    assert average.module[1].num_batches_tracked.item() == 15
    assert not average.module.training
    assert not any(p.requires_grad for p in average.module.parameters())
    assert ema_decay(0.6, 12) < 0.6 == ema_decay(0.6, 13)


@pytest.mark.parametrize("decay", [0.0, 1.0, -0.1])
def test_a_decay_outside_0_1_is_refused(decay):
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\)"):
        WeightAverage(nn.Linear(2, 2), decay)


def test_a_run_evaluates_saves_and_checkpoints_the_average(tiny_config, tmp_path):
    config = tiny_config("train.ema=0.5", "train.eval_every=6", "train.checkpoint_every=6")
    seen: list[dict[str, torch.Tensor]] = []
    trainer = Trainer(config, tmp_path / "run", callbacks=[lambda t, step: seen.append(_snapshot(t.model))])
    start = _snapshot(trainer.model)
    trainer.run()
    expected = _average_by_hand(start, seen, 0.5)
    _assert_close(_snapshot(trainer.ema.module), expected)
    raw = _snapshot(trainer.model)
    assert any(not torch.equal(raw[k], trainer.ema.module.state_dict()[k]) for k in raw)

    run = tmp_path / "run"
    checkpoint = load_training_checkpoint(run / "last.pt")
    _assert_close(checkpoint["model"], {k: v.double() if v.is_floating_point() else v for k, v in raw.items()})
    _assert_close(checkpoint[EMA_KEY], expected)
    # best/ (the only evaluation, at the end), the checkpoint as inference reads it, and the
    # checkpoint as model.checkpoint_path reads it: all the average.
    _assert_close(_snapshot(load_model(run / "best")), expected)
    _assert_close(_snapshot(load_trained_model(run / "last.pt")), expected)
    _assert_close(load_state_dict_file(run / "last.pt"), expected)
    card = (run / "best" / "README.md").read_text()
    assert "exponential moving average of training's (decay 0.5)" in card


def test_the_run_evaluates_the_average(tiny_config, tmp_path):
    trainer = Trainer(tiny_config("train.ema=0.5"), tmp_path / "run")
    evaluated = []
    evaluate = trainer.task.evaluate

    def spy(model, autocast_dtype):
        evaluated.append(model)
        return evaluate(model, autocast_dtype)

    trainer.task.evaluate = spy
    trainer.run()
    assert len(evaluated) == 2 and all(model is trainer.ema.module for model in evaluated)


def test_resume_continues_the_average_bit_for_bit(tiny_config, tmp_path):
    config = tiny_config("train.ema=0.7", "train.eval_every=100", "train.checkpoint_every=100")
    straight = Trainer(config, tmp_path / "straight")
    straight.run()

    def stop_at_three(trainer, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        Trainer(config, tmp_path / "resumed", callbacks=[stop_at_three]).run()
    resumed = Trainer(config, tmp_path / "resumed", resume=True)
    resumed.run()
    a, b = _snapshot(straight.ema.module), _snapshot(resumed.ema.module)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_checkpoint_without_an_average_cannot_continue_one(tiny_config, tmp_path):
    config = tiny_config("train.ema=0.9", "train.eval_every=100", "train.checkpoint_every=3")
    with pytest.raises(TrainingInterrupted):
        Trainer(config, tmp_path / "run", callbacks=[lambda t, step: step == 3 and os.kill(os.getpid(), 15)]).run()
    path = tmp_path / "run" / "last.pt"
    checkpoint = torch.load(path, weights_only=True)
    del checkpoint[EMA_KEY]
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"holds no weight average \(model_ema\) to continue train\.ema=0\.9"):
        Trainer(config, tmp_path / "run", resume=True)
