"""--resume trains the run that was started, or refuses; a run folder holds one run.

One short run (4 steps, stopped after its checkpoint at step 2) is trained once and copied
for each test; refusals happen before any data or model is built, so they cost next to nothing.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch
import yaml

from atrous.cli import main
from atrous.config import ConfigError, config_differences, load_config, resume_may_change
from atrous.engine.checkpoint import load_training_checkpoint
from atrous.engine.trainer import Trainer

STOP = "train.steps=4", "train.checkpoint_every=2", "train.eval_every=2", "train.log_every=1"


class _Stop(Exception):
    pass


def _stop_at_two(trainer, step):
    if step == 2:  # after the step's checkpoint
        raise _Stop


_TEMPLATE: dict[str, object] = {}


@pytest.fixture
def run(tiny_config, tmp_path_factory, tmp_path):
    """A copy of a 4-step run stopped after its checkpoint at step 2 (trained once per module)."""
    if "run" not in _TEMPLATE:
        template = tmp_path_factory.mktemp("resume") / "run"
        with pytest.raises(_Stop):
            Trainer(tiny_config(*STOP), template, callbacks=[_stop_at_two]).run()
        _TEMPLATE["run"] = template
    copy = tmp_path / "run"
    shutil.copytree(_TEMPLATE["run"], copy)
    return copy


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("atrous train: error: ") and "\n" not in err, err
    return err


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def test_a_changed_schedule_is_refused_before_training(run, capsys):
    before = {name: (run / name).read_bytes() for name in ("last.pt", "config.yaml", "metrics.jsonl")}
    code = main(["train", "--run-dir", str(run), "--resume", "--set", "train.steps=10", "--set", "train.lr=2e-2"])
    assert code == 2
    err = _error_line(capsys)
    assert "train.steps 4 → 10" in err and "train.lr 0.01 → 0.02" in err
    assert f"--set model.checkpoint_path={run / 'last.pt'}" in err  # how to train on with new values
    for name, data in before.items():
        assert (run / name).read_bytes() == data, f"{name} changed by a refused resume"


@pytest.mark.parametrize(
    ("argv", "expect"),
    [
        (["--seed", "5"], "train.seed 0 → 5"),
        (["--deterministic"], "train.deterministic false → true"),
        (["--set", "data.batch_size=2"], "data.batch_size 4 → 2"),
        (["--set", "train.ema=0.99"], "train.ema null → 0.99"),
        (["--set", "model.name=deeplabv3_resnet50"], "model.name 'deeplabv3_resnet18' → 'deeplabv3_resnet50'"),
        (["--set", "data.train_options.seed=3"], "data.train_options {num_samples: 16, seed: 0} → {num_samples: 16"),
        # NHWC changes the masks dropout draws from the same seed: another training.
        (["--set", "train.channels_last=false"], "train.channels_last true → false"),
    ],
)
def test_what_changes_the_training_is_refused(run, capsys, argv, expect):
    assert main(["train", "--run-dir", str(run), "--resume", *argv]) == 2
    assert expect in _error_line(capsys)


def test_resume_without_a_recipe_uses_the_run_config_and_may_change_the_cadence(run, capsys):
    """Not the defaults (a DeepLab v3+ for 30 000 steps on 512² crops): the run's own values,
    with the allowed changes recorded in config.yaml."""
    code = main(["train", "--run-dir", str(run), "--resume", "--set", "train.log_every=2", "--set", "eval.flip=true"])
    assert code == 0, capsys.readouterr().err
    assert "trained 4 steps" in capsys.readouterr().out
    checkpoint = load_training_checkpoint(run / "last.pt")
    assert checkpoint["step"] == 4 and checkpoint["config"]["train"]["log_every"] == 2
    recorded = yaml.safe_load((run / "config.yaml").read_text())
    assert recorded["train"]["log_every"] == 2 and recorded["eval"]["flip"] is True
    assert recorded["model"]["name"] == "deeplabv3_resnet18" and recorded["train"]["steps"] == 4
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 4]  # log_every 1, then 2 after the resume
    assert train[-1]["lr"] == 0.0  # the run's own 4-step poly schedule, ended


def test_a_hand_edited_config_yaml_is_named(run, capsys):
    path = run / "config.yaml"
    path.write_text(path.read_text().replace("lr: 0.01", "lr: 0.05"))
    assert main(["train", "--run-dir", str(run), "--resume"]) == 2
    err = _error_line(capsys)
    assert "train.lr 0.01 → 0.05" in err and "config.yaml was edited after last.pt was written (train.lr)" in err


def test_the_python_api_refuses_too(run, tiny_config):
    with pytest.raises(ConfigError, match=r"cannot resume .*last\.pt with other values .*train\.steps 4 → 8"):
        Trainer(tiny_config(*STOP, "train.steps=8"), run, resume=True)
    # Values that do not change the training may differ.
    allowed = tiny_config(*STOP, "train.eval_every=1", "data.workers=0", "train.max_time_s=60")
    trainer = Trainer(allowed, run, resume=True)
    assert trainer.step == 2


def test_a_checkpoint_of_another_model_or_process_count(run, tiny_config, tmp_path):
    with pytest.raises(ConfigError, match=r"model\.name 'deeplabv3_resnet18' → 'deeplabv3plus_resnet18'"):
        Trainer(tiny_config(*STOP, "model.name=deeplabv3plus_resnet18"), tmp_path / "new", resume=run / "last.pt")
    checkpoint = load_training_checkpoint(run / "last.pt")
    checkpoint["world_size"] = 2
    torch.save(checkpoint, tmp_path / "ddp.pt")
    with pytest.raises(ValueError, match=r"trained by 2 process\(es\) and this run has 1"):
        Trainer(tiny_config(*STOP), tmp_path / "new", resume=tmp_path / "ddp.pt")


def test_the_instance_trainer_follows_the_same_rule(run, tmp_path):
    from atrous.engine.trainer import Trainer as InstanceTrainer

    instance = [
        "model.name=maskrcnn_resnet18_fpn",
        "data.dataset=dsb2018_nuclei",
        f"data.root={tmp_path}",
        "data.crop_size=[512, 512]",  # the default: the semantic run's crop would be refused first
    ]
    config = load_config(run / "config.yaml", instance)
    with pytest.raises(ConfigError, match=r"model\.name 'deeplabv3_resnet18' → 'maskrcnn_resnet18_fpn'"):
        InstanceTrainer(config, run, resume=True)
    with pytest.raises(ValueError, match=r"already holds a run \(last\.pt\): pass --resume"):
        InstanceTrainer(config, run)


def test_a_folder_holding_a_run_is_not_a_new_run(run, tiny_config, tmp_path, capsys):
    with pytest.raises(ValueError, match=r"already holds a run \(last\.pt\): pass --resume"):
        Trainer(tiny_config(*STOP), run)
    half = tmp_path / "half"
    half.mkdir()
    (half / "metrics.jsonl").write_text('{"kind": "train", "step": 1}\n')  # killed before its first checkpoint
    assert main(["train", "-c", str(run / "config.yaml"), "--run-dir", str(half)]) == 2
    assert "already holds a run (metrics.jsonl) that wrote no last.pt" in _error_line(capsys)


def test_the_resume_rule_table():
    old = load_config(None, [])
    allowed = ["train.eval_every=5", "train.device=cpu", "data.workers=0", "data.root=/x", "eval.tile=64"]
    refused = ["train.steps=5", "train.lr=0.1", "train.seed=1", "train.amp=bf16", "model.checkpoint_path=w.pt"]
    for item in allowed + refused:
        (key, _, _), *rest = config_differences(old, load_config(None, [item]))
        assert not rest and resume_may_change(key) == (item in allowed), item
    assert config_differences(load_config(None, ["train.amp=off"]), load_config(None, ["train.amp=false"])) == []


def test_stale_temp_files_are_removed_at_start_and_a_failed_save_leaves_none(run, tiny_config, monkeypatch, capsys):
    import atrous.engine.checkpoint as checkpoint_module

    pid = _dead_pid()
    stale = [run / f".last.pt.atrous-{pid}-k1.tmp", run / "best" / f".model.safetensors.atrous-{pid}-k2.tmp"]
    for path in stale:
        path.write_bytes(b"half a checkpoint")
    last = (run / "last.pt").read_bytes()
    real_save = torch.save

    def disk_full(obj, f, *args, **kwargs):
        real_save(obj, f, *args, **kwargs)
        raise OSError(28, "No space left on device", str(f))

    monkeypatch.setattr(checkpoint_module.torch, "save", disk_full)
    trainer = Trainer(tiny_config(*STOP), run, resume=True)
    out = capsys.readouterr().out
    assert "removed 2 temporary file(s) left by an interrupted save" in out and stale[0].name in out
    assert not any(path.exists() for path in stale)
    with pytest.raises(OSError, match="No space left"):
        trainer.run()  # the checkpoint at step 4
    assert (run / "last.pt").read_bytes() == last  # the good checkpoint stays
    assert not [p for p in run.rglob("*.tmp")]


def test_a_failed_evaluation_keeps_the_step_checkpoint_and_resume_evaluates_it(tiny_config, tmp_path):
    config = tiny_config("train.steps=1", "train.eval_every=1", "train.checkpoint_every=1")
    trainer = Trainer(config, tmp_path / "run")

    def out_of_memory():
        raise RuntimeError("out of memory during evaluation")

    trainer.evaluate_and_track = out_of_memory
    with pytest.raises(RuntimeError, match="out of memory"):
        trainer.run()
    assert load_training_checkpoint(tmp_path / "run" / "last.pt")["step"] == 1  # the training is kept
    result = Trainer(config, tmp_path / "run", resume=True).run()
    assert result.steps == 1 and result.last_metrics is not None and result.last_metrics["step"] == 1


def test_without_config_yaml_the_checkpoint_config_is_the_base(run, capsys):
    (run / "config.yaml").unlink()
    assert main(["train", "--run-dir", str(run), "--resume", "--set", "train.steps=10"]) == 2
    err = _error_line(capsys)
    assert "train.steps 4 → 10." in err and "model.name" not in err  # the run's values, not the defaults
