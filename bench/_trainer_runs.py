"""What bench/data.py and bench/train_curve.py share: the CamVid recipe at CPU sizes, run
through the real Trainer and stopped from a callback."""

from __future__ import annotations

import argparse
import gc
import os
import time
from collections.abc import Callable
from pathlib import Path

import torch

from atrous.config import load_config
from atrous.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_CONFIG = ROOT / "configs" / "deeplabv3plus_resnet50_os16_camvid.yaml"
# bench/camvid.py's CPU sizes, with the default worker count (DataConfig.workers).
CPU_OVERRIDES = ["data.crop_size=[256, 256]", "data.batch_size=4", "data.workers=2"]
# A bench times or stops its own steps: no time budget, so no schedule fitted to one either
# (the config refuses train.fit_to_budget without train.max_time_s; the CPU CamVid ResNet-18 recipe sets it).
UNTIMED = {"max_time_s": None, "fit_to_budget": False}


def recipe_parser(description: str | None) -> argparse.ArgumentParser:
    """The options every trainer bench takes: the recipe, overrides, JSON output."""
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="recipe (default: the CamVid one)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the table")
    return parser


class StopRun(Exception):
    """Raised from a Trainer callback to end ``run()`` once the measured steps are done."""


def run_until_stopped(trainer: Trainer, callback: Callable[[Trainer, int], None]) -> float:
    """Run ``trainer`` with ``callback`` after every step until it raises :class:`StopRun`;
    returns the ``time.perf_counter()`` at which the run began."""
    trainer.callbacks.append(callback)
    start = time.perf_counter()
    try:
        trainer.run()
    except StopRun:
        pass
    finally:
        trainer.callbacks.remove(callback)
    return start


def release(trainer: Trainer) -> None:
    """Drop the trainer's loaders (which ends their persistent workers) and free its memory."""
    trainer.train_loader = trainer.val_loader = None  # type: ignore[assignment]
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def data_overrides(config_path: Path, overrides: list[str]) -> list[str]:
    """Overrides that let the recipe run without a val/ folder and find CamVid.

    The benches never evaluate, but the Trainer builds a validation set: the training split
    stands in for it. CamVid without a ``data.root`` is looked for in ``$ATROUS_DATA/camvid``
    (default ``<repo>/../shared/data/camvid``); its absence ends the script with a message.
    """
    peek = load_config(config_path, overrides)
    result = [f"data.val_split={peek.data.train_split}"]
    if peek.data.dataset == "camvid" and peek.data.root is None:
        data_root = Path(os.environ.get("ATROUS_DATA", ROOT.parent / "shared" / "data")) / "camvid"
        if not (data_root / peek.data.train_split).is_dir():
            raise SystemExit(
                f"CamVid not found at {data_root} (no {peek.data.train_split}/ folder); "
                "set ATROUS_DATA to the folder holding camvid/"
            )
        result.append(f"data.root={data_root}")
    return result
