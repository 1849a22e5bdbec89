"""Does the data pipeline keep up with training? Loader images/s against training images/s.

    python bench/data.py [--config PATH] [--set key=value ...] [--batches 30] [--train-steps 10] [--json]

Runs configs/deeplabv3plus_resnet50_os16_camvid.yaml with the CPU-sized overrides of
bench/camvid.py (256×256 crops, batch 4) and the default worker count (data.workers=2), or
the recipe given with --config as it is written (its own crop, batch and workers), and
measures three things, each through the Trainer itself (same datasets, same loader, same
step, same precision):

1. loader alone: images/s of ``Trainer.train_loader`` (decode + augmentation in the
   workers) over --batches batches after the first one (worker start-up), with no model;
2. training alone: images/s of ``Trainer.run()``'s step (forward, backward, optimiser
   step, with the configured autocast and memory format) over --train-steps steps after a
   warm-up step, fed one batch held in memory, so no data loading is timed;
3. training with the real loader: steps/s over --train-steps steps after a warm-up step,
   and the fraction of the step time spent blocked in ``next(loader)``. The workers share
   the CPU with training here, so this is the number that says whether data keeps up.

The target is loader alone ≥ 3× training alone, and a data-wait fraction near zero. The
workers prefetch ``2 × workers`` batches during the warm-up step, so the data wait of the
first few measured steps is hidden: use --train-steps well above that for a steady state.
"""

from __future__ import annotations

import dataclasses
import gc
import itertools
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # bench/ itself, also when loaded by path
from _trainer_runs import (
    CPU_OVERRIDES,
    DEFAULT_CONFIG,
    UNTIMED,
    StopRun,
    data_overrides,
    recipe_parser,
    release,
    run_until_stopped,
)

from atrous.config import Config, load_config
from atrous.engine.trainer import Trainer

TARGET_RATIO = 3.0


class _TimedLoader:
    """Wraps the training loader; adds up the seconds spent blocked in ``next()``."""

    def __init__(self, loader: Iterable) -> None:
        self.loader = loader
        self.wait_s = 0.0

    def __iter__(self) -> Iterator:
        iterator = iter(self.loader)
        while True:
            start = time.perf_counter()
            try:
                item = next(iterator)
            except StopIteration:
                return
            self.wait_s += time.perf_counter() - start
            yield item


def _bench_config(config: Config, train_steps: int) -> Config:
    """``config`` with a schedule long enough for the measured steps and no eval, log or checkpoint in them."""
    never = 10**9
    train = dataclasses.replace(
        config.train,
        steps=train_steps + 2,  # the run is stopped after train_steps + 1, before the final eval and save
        # A recipe's warm-up may be longer than the timed run (the CPU recipes' 50-100 steps); the
        # learning rate does not change a step's cost, and the config refuses warm-up > steps.
        warmup_steps=min(config.train.warmup_steps, train_steps + 2),
        **UNTIMED,
        eval_every=never,
        log_every=never,
        checkpoint_every=never,
        progress=False,
    )
    return dataclasses.replace(config, train=train)


def _loader_alone(loader: Iterable, batches: int) -> tuple[list[torch.Tensor], float, int, float]:
    """(first batch, its seconds, images in the next ``batches`` batches, their seconds)."""
    iterator = iter(loader)
    start = time.perf_counter()
    first = next(iterator)
    first_s = time.perf_counter() - start
    images = 0
    start = time.perf_counter()
    for _ in range(batches):
        images += len(next(iterator)[0])
    return [t.clone() for t in first], first_s, images, time.perf_counter() - start


def _time_steps(trainer: Trainer, steps: int, timed: _TimedLoader | None = None) -> dict[str, float]:
    """Run ``trainer.run()`` for a warm-up step and ``steps`` more; time them (and the data wait)."""
    marks: list[tuple[float, float]] = []  # (time, data wait so far) after each optimiser step

    def mark(trainer: Trainer, step: int) -> None:
        if trainer.device.type == "cuda":
            torch.cuda.synchronize(trainer.device)
        marks.append((time.perf_counter(), timed.wait_s if timed is not None else 0.0))
        if step == steps + 1:
            raise StopRun

    start = run_until_stopped(trainer, mark)
    if len(marks) != steps + 1:
        raise RuntimeError(f"the run stopped after {len(marks)} steps; expected {steps + 1}")
    (t1, wait1), (t_end, wait_end) = marks[0], marks[-1]
    return {"first_step_s": t1 - start, "seconds": t_end - t1, "wait_s": wait_end - wait1}


def measure(config: Config, *, batches: int, train_steps: int, run_dir: str | os.PathLike) -> dict[str, Any]:
    """Loader throughput alone, training throughput alone, and the data wait of real training.

    Args:
        config: the resolved configuration; its schedule, eval, log and checkpoint settings
            are replaced so that nothing but training steps runs in the measured window.
        batches: loader batches to time after the first.
        train_steps: training steps to time after a warm-up step (both training measurements).
        run_dir: a scratch folder for the Trainers' run folders (they write only config.yaml).

    Returns:
        One flat dict of plain numbers and strings (see ``main`` for the table).
    """
    if batches < 1 or train_steps < 1:
        raise ValueError(f"--batches and --train-steps must be >= 1, got {batches} and {train_steps}")
    config = _bench_config(config, train_steps)
    run_dir = Path(run_dir)
    images_per_step = config.data.batch_size * config.train.grad_accum

    # 1. Loader alone, and 2. training alone on one of its batches: one Trainer, no model in (1).
    trainer = Trainer(config, run_dir / "alone")
    first_batch, first_batch_s, loader_images, loader_s = _loader_alone(trainer.train_loader, batches)
    trainer.train_loader = itertools.repeat(first_batch)  # type: ignore[assignment]
    gc.collect()  # the real loader is gone: its workers end before training is timed
    alone = _time_steps(trainer, train_steps)
    info = {
        "model": config.model.name,
        "dataset": config.data.dataset,
        "device": str(trainer.device),
        "threads": torch.get_num_threads(),
        "workers": config.data.workers,
        "batch_size": config.data.batch_size,
        "grad_accum": config.train.grad_accum,
        "crop_size": list(config.data.crop_size),
        "autocast": {None: "off", torch.bfloat16: "bf16", torch.float16: "fp16"}[trainer.autocast_dtype],
        "channels_last": bool(config.train.channels_last),
    }
    release(trainer)
    del trainer
    gc.collect()

    # 3. Training with the real loader: the workers compete with training for the CPU.
    trainer = Trainer(config, run_dir / "real")
    timed = _TimedLoader(trainer.train_loader)
    trainer.train_loader = timed  # type: ignore[assignment]
    real = _time_steps(trainer, train_steps, timed)
    release(trainer)
    del trainer, timed
    gc.collect()

    loader_img_s = loader_images / loader_s
    train_img_s = train_steps * images_per_step / alone["seconds"]
    ratio = loader_img_s / train_img_s
    return {
        **info,
        "loader_batches": batches,
        "loader_first_batch_s": first_batch_s,
        "loader_img_s": loader_img_s,
        "train_steps": train_steps,
        "train_first_step_s": alone["first_step_s"],
        "train_step_s": alone["seconds"] / train_steps,
        "train_img_s": train_img_s,
        "ratio": ratio,
        "target_ratio": TARGET_RATIO,
        "meets_target": ratio >= TARGET_RATIO,
        "real_first_step_s": real["first_step_s"],
        "real_steps_per_s": train_steps / real["seconds"],
        "real_img_s": train_steps * images_per_step / real["seconds"],
        "data_wait_fraction": real["wait_s"] / real["seconds"],
        "data_wait_s_per_step": real["wait_s"] / train_steps,
    }


def format_table(r: dict[str, Any]) -> str:
    crop = "×".join(str(s) for s in r["crop_size"])
    verdict = "met" if r["meets_target"] else "NOT met"
    lines = [
        f"{r['model']} on {r['dataset']}: batch {r['batch_size']}, crop {crop}, {r['workers']} loader workers, "
        f"{r['device']} ({r['threads']} threads), autocast {r['autocast']}, "
        f"channels_last {'on' if r['channels_last'] else 'off'}",
        f"  loader alone       {r['loader_img_s']:9.2f} img/s   "
        f"({r['loader_batches']} batches after a {r['loader_first_batch_s']:.2f} s first batch)",
        f"  training alone     {r['train_img_s']:9.2f} img/s   "
        f"({r['train_steps']} steps of {r['train_step_s']:.3f} s after a {r['train_first_step_s']:.2f} s first step)",
        f"  ratio              {r['ratio']:9.2f} ×       (target ≥ {r['target_ratio']:g}×: {verdict})",
        f"  training + loader  {r['real_img_s']:9.2f} img/s   "
        f"({r['real_steps_per_s']:.3f} steps/s; {100 * r['data_wait_fraction']:.1f} % of step time "
        f"waiting for data, {r['data_wait_s_per_step']:.3f} s/step)",
    ]
    return "\n".join(lines)


def recipe_overrides(config_path: Path, overrides: list[str]) -> list[str]:
    """What ``main`` applies before the user's ``--set``: the CPU sizes for the default recipe only
    (a GPU one: ResNet-50, 352×480 crops, batch 8); a recipe given with ``--config`` is measured at its own
    crop, batch and workers — before, the CPU sizes replaced them too unless restated with --set."""
    sizing = CPU_OVERRIDES if Path(config_path).resolve() == DEFAULT_CONFIG.resolve() else []
    return [*sizing, *data_overrides(config_path, overrides)]


def main() -> None:
    parser = recipe_parser(__doc__)
    parser.add_argument("--batches", type=int, default=30, help="loader batches timed after the first (default 30)")
    parser.add_argument("--train-steps", type=int, default=10, help="steps timed after a warm-up (default 10)")
    args = parser.parse_args()

    config = load_config(args.config, [*recipe_overrides(args.config, args.overrides), *args.overrides])

    with tempfile.TemporaryDirectory(prefix="bench_data_") as run_dir:
        result = measure(config, batches=args.batches, train_steps=args.train_steps, run_dir=run_dir)
    if args.json:
        rounded = {k: round(v, 4) if isinstance(v, float) and math.isfinite(v) else v for k, v in result.items()}
        print(json.dumps(rounded))
    else:
        print(format_table(result))


if __name__ == "__main__":
    main()
