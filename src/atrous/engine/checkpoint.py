"""Training checkpoints: atomic writes, safe loads, everything ``--resume`` needs.

A checkpoint holds the model, optimiser, scheduler and gradient-scaler states, the step,
the best metric so far, and the random-number states of Python, NumPy and torch (CPU and
CUDA), so that a resumed run continues exactly where the stopped one was. Files are
written to a temporary name in the same folder and renamed into place (``os.replace`` is
atomic on POSIX), so a crash mid-write never leaves a half-written ``last.pt`` in place of
a good one. Loading uses ``torch.load(weights_only=True)``: no arbitrary pickle runs.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..atomic import atomic_write

LAST = "last.pt"
BEST = "best.pt"


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> None:
    atomic_write(path, lambda tmp: torch.save(obj, tmp))


def rng_state() -> dict[str, Any]:
    """Python, NumPy and torch generator states, in types ``weights_only`` loading accepts."""
    np_state = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].copy()), *np_state[2:]],
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    version, keys, *rest = state["numpy"]
    random.setstate(_as_tuple(state["python"]))
    np.random.set_state((version, keys.numpy().astype(np.uint32), *rest))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _as_tuple(obj: Any) -> Any:
    # random.setstate needs tuples; a save/load round trip may hand back lists.
    return tuple(_as_tuple(x) for x in obj) if isinstance(obj, list | tuple) else obj


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ValueError(f"{path} is not a readable training checkpoint: {exc}") from exc
    missing = [k for k in ("model", "optimizer", "scheduler", "step") if k not in checkpoint]
    if missing:
        raise ValueError(f"{path} is not an atrous training checkpoint (missing {', '.join(missing)})")
    return checkpoint
