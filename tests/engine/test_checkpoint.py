import random

import numpy as np
import pytest
import torch

from atrous.engine.checkpoint import atomic_torch_save, load_training_checkpoint, rng_state, set_rng_state


def test_rng_state_round_trips_through_a_weights_only_file(tmp_path):
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    atomic_torch_save({"rng": rng_state(), "model": {}, "optimizer": {}, "scheduler": {}, "step": 0}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(), torch.rand(1))
    set_rng_state(load_training_checkpoint(tmp_path / "c.pt")["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1)) == expected


def test_interrupted_save_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_torch_save({"step": 1}, path)
    before = path.read_bytes()

    def crash(obj, f, *args, **kwargs):
        with open(f, "wb") as handle:
            handle.write(b"half")
        raise OSError("no space left on device")

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(OSError, match="no space left"):
        atomic_torch_save({"step": 2}, path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_loading_rejects_non_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_training_checkpoint(tmp_path / "nope.pt")
    torch.save({"model": {}}, tmp_path / "weights.pt")
    with pytest.raises(ValueError, match=r"not an atrous training checkpoint \(missing optimizer, scheduler, step\)"):
        load_training_checkpoint(tmp_path / "weights.pt")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ValueError, match="not a readable training checkpoint"):
        load_training_checkpoint(tmp_path / "junk.pt")


def test_check_resume_needs_a_recorded_config_of_the_same_run(tmp_path):
    from atrous.config import ConfigError, load_config
    from atrous.engine.checkpoint import check_resume

    config = load_config(None, ["train.steps=10"])
    path = tmp_path / "last.pt"
    with pytest.raises(ValueError, match=r"records no config.*--set model\.checkpoint_path=.*last\.pt"):
        check_resume(config, {"step": 3}, path)
    check_resume(config, {"config": config.to_dict()}, path)  # the same run
    check_resume(load_config(None, ["train.steps=10", "train.log_every=1"]), {"config": config.to_dict()}, path)
    with pytest.raises(ConfigError, match=r"train\.steps 10 → 20; train\.optimizer 'sgd' → 'adamw'"):
        check_resume(load_config(None, ["train.steps=20", "train.optimizer=adamw"]), {"config": config.to_dict()}, path)
    with pytest.raises(ConfigError, match=r"does not fit this atrous \(unknown key train\.old_key"):
        check_resume(config, {"config": {"train": {"old_key": 1}}}, path)


def test_best_score_beside_a_checkpoint(tmp_path):
    from atrous.engine.checkpoint import recorded_best

    assert recorded_best(tmp_path / "last.pt", 5, "miou") == float("-inf")
    atomic_torch_save({"step": 4, "miou": 0.5}, tmp_path / "best.pt")
    assert recorded_best(tmp_path / "last.pt", 5, "miou") == 0.5
    assert recorded_best(tmp_path / "last.pt", 3, "miou") == float("-inf")  # from after the checkpoint: not this run's
    (tmp_path / "best.pt").write_bytes(b"junk")
    assert recorded_best(tmp_path / "last.pt", 5, "miou") == float("-inf")


def test_a_folder_holding_a_run_is_refused_for_a_new_one(tmp_path):
    from atrous.engine.checkpoint import RUN_CONFIG_HEADER, check_new_run_dir

    check_new_run_dir(tmp_path / "missing")
    # A user's recipe, weights or plots under the names a run writes are never overwritten.
    (tmp_path / "config.yaml").write_text("# my recipe\nmodel: {name: unet}\n")
    (tmp_path / "precision.json").write_text("{}")
    with pytest.raises(ValueError, match=r"holds config\.yaml, precision\.json, which a new run would overwrite"):
        check_new_run_dir(tmp_path)
    (tmp_path / "config.yaml").unlink()
    (tmp_path / "best").mkdir()
    (tmp_path / "best.pt").write_bytes(b"weights to start from")
    with pytest.raises(ValueError, match=r"holds precision\.json, best, best\.pt, which a new run would overwrite"):
        check_new_run_dir(tmp_path)
    # What a start that failed before its first step left (its config.yaml says so) may be replaced.
    (tmp_path / "config.yaml").write_text(RUN_CONFIG_HEADER + "{}\n")
    check_new_run_dir(tmp_path)
    (tmp_path / "metrics.jsonl").write_text("")
    with pytest.raises(ValueError, match=r"holds a run \(metrics\.jsonl\) that wrote no last\.pt"):
        check_new_run_dir(tmp_path)
    (tmp_path / "last.pt").write_bytes(b"")
    with pytest.raises(ValueError, match=r"already holds a run \(last\.pt\): pass --resume"):
        check_new_run_dir(tmp_path)


def test_a_run_folder_in_use_is_refused_and_free_again_once_released(tmp_path):
    from atrous.engine.checkpoint import RunLock

    first = RunLock(tmp_path / "run")
    with pytest.raises(ValueError, match="in use by another training run"):
        RunLock(tmp_path / "run")
    first.release()
    RunLock(tmp_path / "run").release()
    assert list((tmp_path / "run").iterdir()) == []  # no lock file left behind
