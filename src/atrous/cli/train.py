"""``atrous train``: train any registered model from a YAML recipe."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from .common import add_config_options

HELP = "train a model (one process, or several through torchrun)"


def add_parser(parser: argparse.ArgumentParser) -> None:
    add_config_options(parser)
    parser.add_argument("--run-dir", type=Path, help="run folder (default runs/<config>-<time>)")
    parser.add_argument("--resume", action="store_true", help="continue from RUN_DIR/last.pt")
    parser.add_argument("--seed", type=int, help="seed Python, NumPy, torch and the data order")
    parser.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms")


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..engine.trainer import Trainer

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.deterministic:
        overrides.append("train.deterministic=true")
    config = load_config(args.config, overrides)
    run_dir = args.run_dir
    if args.resume:
        if run_dir is None:
            raise ValueError("--resume needs --run-dir (the run to continue)")
        if not (run_dir / "last.pt").is_file():
            raise FileNotFoundError(f"--resume: {run_dir / 'last.pt'} does not exist")
    else:
        if run_dir is None:
            stem = args.config.stem if args.config else config.model.name
            run_dir = Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        if (run_dir / "last.pt").exists():
            raise ValueError(f"{run_dir} already holds a run (last.pt): pass --resume, or choose another --run-dir")
    from ..models import model_task

    if model_task(config.model.name) == "instance":
        from ..engine.instance_trainer import InstanceTrainer

        result = InstanceTrainer(config, run_dir, resume=args.resume).run()
        print(f"trained {result.steps} steps; best validation mask AP {result.best_miou:.4f}")
        print(f"run folder: {result.run_dir}  (best model: {result.run_dir / 'best'})")
        return 0
    result = Trainer(config, run_dir, resume=args.resume).run()
    print(f"trained {result.steps} steps; best validation mIoU {result.best_miou:.4f}")
    print(f"run folder: {result.run_dir}  (best model: {result.run_dir / 'best'}, plots: {result.run_dir / 'plots'})")
    return 0
