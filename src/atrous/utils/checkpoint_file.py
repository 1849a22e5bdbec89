"""Reading a training checkpoint file and checking its form.

Below both the trainers (:mod:`atrous.engine.checkpoint`, which writes and resumes
checkpoints) and inference (:func:`atrous.inference.load_trained_model`, which rebuilds a
model from one): reading needs neither.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .state_dict import EMA_KEY, read_torch_file

#: What every atrous training checkpoint holds.
CHECKPOINT_KEYS = ("model", "optimizer", "scheduler", "step")


def inference_weights(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The weights a checkpoint's run evaluated: the weight average where the run kept one
    (``train.ema``), else the trained weights. Only ``--resume`` reads the raw ones."""
    return checkpoint.get(EMA_KEY) or checkpoint["model"]


def load_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """The checkpoint at ``path`` (``torch.load`` with ``weights_only=True``, on the CPU),
    checked to be an atrous training checkpoint; one-line errors name the file and the
    problem."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    checkpoint = read_torch_file(path, "training checkpoint")
    if not isinstance(checkpoint, dict):
        raise ValueError(f"{path} is not an atrous training checkpoint (it holds a {type(checkpoint).__name__})")
    missing = [k for k in CHECKPOINT_KEYS if k not in checkpoint]
    if missing:
        raise ValueError(f"{path} is not an atrous training checkpoint (missing {', '.join(missing)})")
    return checkpoint
