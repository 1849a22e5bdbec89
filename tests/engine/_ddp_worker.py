"""Run in each of two gloo processes by test_distributed.py (a module, so spawn can import it)."""

from __future__ import annotations

import json
import os
import types
from pathlib import Path

import torch


def train_rank(
    rank: int, world_size: int, port: int, out: str, overrides: list[str], seconds_per_step: list[float] | None = None
) -> None:
    """``seconds_per_step``: a simulated clock for each rank (the trainer's clock reads its own
    step times the rank's figure), so that ranks can be made to disagree about time."""
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0"
    )
    torch.set_num_threads(1)
    from atrous.config import load_config
    from atrous.engine import distributed
    from atrous.engine import trainer as trainer_module
    from atrous.engine.trainer import Trainer

    try:
        trainer = Trainer(load_config(None, overrides), Path(out) / "run")
        if seconds_per_step is not None:
            pace = seconds_per_step[rank]
            trainer_module.time = types.SimpleNamespace(perf_counter=lambda: pace * trainer.step)  # type: ignore[assignment]
        trainer.run()
        if trainer.schedule_fit is not None:
            (Path(out) / f"rank{rank}_fit.json").write_text(json.dumps(trainer.schedule_fit))
        # What the run evaluated and saved: the weight average with train.ema.
        torch.save(trainer.eval_model.state_dict(), Path(out) / f"rank{rank}.pt")
        val = [r for r in trainer.history if r["kind"] == "val"][-1]
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(val))
    finally:
        distributed.cleanup()
