"""Shared fixtures: a fixed seed, two threads (one per xdist worker), an isolated torch.hub cache
and precision cache, a tiny training config."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from atrous.config import load_config

if os.environ.get("PYTEST_XDIST_WORKER"):
    # make test runs one pytest-xdist worker per core: one thread each, and one in every CLI
    # process a worker starts (they inherit OMP_NUM_THREADS). Two workers with two OpenMP
    # threads each on two cores spin-wait for descheduled siblings (see tests/analysis/conftest.py).
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
else:
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True, scope="session")
def _precision_cache(tmp_path_factory):
    """Measured precision decisions go to a cache of this test session, never the user's."""
    previous = os.environ.get("ATROUS_CACHE")
    os.environ["ATROUS_CACHE"] = str(tmp_path_factory.mktemp("atrous_cache"))
    yield
    if previous is None:
        os.environ.pop("ATROUS_CACHE", None)
    else:
        os.environ["ATROUS_CACHE"] = previous


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """An empty torch.hub cache, so download tests never touch the user's."""
    home = tmp_path / "torch_home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    monkeypatch.setattr(torch.hub, "_hub_dir", None)
    return home


@pytest.fixture
def tiny_config():
    """A run that trains in about a second: DeepLab v3 (ResNet-18) on 32×32 synthetic shapes."""

    def make(*overrides: str):
        base = [
            "model.name=deeplabv3_resnet18",
            "data.dataset=synthetic",
            "data.options={size: 32, num_classes: 3}",
            "data.train_options={num_samples: 16, seed: 0}",
            "data.val_options={num_samples: 4, seed: 1}",
            "data.crop_size=[32, 32]",
            "data.batch_size=4",
            "data.val_batch_size=2",
            "data.workers=0",
            "train.steps=6",
            "train.lr=0.01",
            "train.eval_every=3",
            "train.log_every=1",
            "train.checkpoint_every=3",
            "train.progress=false",
            "train.amp=off",
        ]
        return load_config(None, [*base, *overrides])

    return make


def pytest_addoption(parser):
    parser.addoption(
        "--kills",
        type=int,
        default=None,
        help="kill -9s of tests/engine/test_kill_resume.py (default 10, or $ATROUS_KILLS)",
    )
