"""What a run records about itself in the model card of each ``best/`` model
(:mod:`atrous.models.card` renders it): the command, the data, the training and the
evaluation at the saved step."""

from __future__ import annotations

import platform
from typing import TYPE_CHECKING, Any

import torch

from .. import __version__

if TYPE_CHECKING:
    from .trainer import Trainer


def describe_hardware(device: torch.device) -> str:
    """``"NVIDIA H200"`` or ``"AMD EPYC 9R14 (2 threads)"``: what the card says the run ran on."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device.index if device.index is not None else torch.cuda.current_device())
    from ..runtime import cpu_model

    return f"{cpu_model() or platform.machine()} CPU ({torch.get_num_threads()} threads)"


def card_record(trainer: Trainer, metrics: dict[str, Any], seconds: float) -> dict[str, Any]:
    """``metadata["card"]`` for the model saved at ``trainer.step`` with these validation ``metrics``."""
    config = trainer.config
    data, train = config.data, config.train
    return {
        "command": trainer.command,
        "data": {
            "dataset": data.dataset,
            "train_split": data.train_split,
            "val_split": data.val_split,
            "train_images": len(trainer.train_set),
            "val_images": len(trainer.val_set),
        },
        "training": {
            "step": trainer.step,
            "steps": trainer.steps,  # train.steps, or what train.fit_to_budget fitted
            "schedule_fit": trainer.schedule_fit,
            "seconds": round(seconds, 1),
            "hardware": describe_hardware(trainer.device),
            "processes": trainer.dist.world_size,
            "precision": trainer.precision_choice.precision,
            "torch": torch.__version__,
            "atrous": __version__,
            "pretrained": config.model.checkpoint_path or config.model.pretrained_backbone,
            "ema": train.ema,  # the saved weights are the average's (engine/ema.py)
        },
        "evaluation": {
            "split": data.val_split,
            "step": trainer.step,
            "setting": "single scale, as the run evaluates",
            "images": len(trainer.val_set),
            "metrics": metrics,
            "intervals": trainer.task.score_intervals(),
            # best/ is the step that scored best on these same images: more than one
            # evaluation means the figures above also chose the model (models/card.py says so).
            "evaluations": (trainer.steps - 1) // train.eval_every + 1,
        },
    }
