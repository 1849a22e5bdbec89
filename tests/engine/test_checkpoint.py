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
