"""Run in each of two gloo processes by test_distributed.py (a module, so spawn can import it)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import torch


def train_rank(rank: int, world_size: int, port: int, out: str, overrides: list[str]) -> None:
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size), LOCAL_RANK="0"
    )
    torch.set_num_threads(1)
    from atrous.config import load_config
    from atrous.engine import distributed
    from atrous.engine.trainer import Trainer

    try:
        trainer = Trainer(load_config(None, overrides), Path(out) / "run")
        trainer.run()
        # What the run evaluated and saved: the weight average with train.ema.
        torch.save(trainer.eval_model.state_dict(), Path(out) / f"rank{rank}.pt")
        val = [r for r in trainer.history if r["kind"] == "val"][-1]
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(val))
    finally:
        distributed.cleanup()
