"""``atrous train``: train any registered model from a YAML recipe."""

from __future__ import annotations

import argparse
import os
import textwrap
import time
from pathlib import Path

from .common import add_config_options, command_line

HELP = "train a model (one process, or several through torchrun)"

RESUME_RULE = """\
--resume continues RUN_DIR with the config the run recorded (RUN_DIR/config.yaml, checked
against RUN_DIR/last.pt), with any -c/--set given on top. Only values that do not change
what is trained may differ:
  {may_change}
Any other difference (train.steps, lr, seed, batch size, model, ...) is refused before
training, naming each key old -> new: the checkpoint's optimiser and schedule would keep
the old values. To train on with new values, start a new run from the weights:
  atrous train -c RECIPE --run-dir NEW --set model.checkpoint_path=RUN_DIR/last.pt
Without --resume, a RUN_DIR that already holds a run (last.pt, metrics.jsonl) is refused."""


def add_parser(parser: argparse.ArgumentParser) -> None:
    from ..config import RESUME_MAY_CHANGE

    add_config_options(parser)
    parser.add_argument("--run-dir", type=Path, help="run folder (default runs/<config>-<time>)")
    parser.add_argument(
        "--resume", action="store_true", help="continue RUN_DIR from its last.pt, with its recorded config (see below)"
    )
    parser.add_argument("--seed", type=int, help="seed Python, NumPy, torch and the data order")
    parser.add_argument("--deterministic", action="store_true", help="torch deterministic algorithms")
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    may_change = ", ".join(k + "*" if k.endswith(".") else k for k in RESUME_MAY_CHANGE)
    parser.epilog = RESUME_RULE.format(may_change=textwrap.fill(may_change, 88, subsequent_indent="  "))


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..engine.checkpoint import LAST, recorded_config
    from ..engine.trainer import Trainer

    overrides = list(args.overrides)
    if args.seed is not None:
        overrides.append(f"train.seed={args.seed}")
    if args.deterministic:
        overrides.append("train.deterministic=true")
    run_dir = args.run_dir
    if args.resume:
        if run_dir is None:
            raise ValueError("--resume needs --run-dir (the run to continue)")
        if not (run_dir / LAST).is_file():
            raise FileNotFoundError(f"--resume: {run_dir / LAST} does not exist")
        # The run's recorded config, then -c and --set on top (not the defaults: flags left
        # out keep the run's values); the trainer refuses what would change the training.
        config = load_config(args.config, overrides, base=recorded_config(run_dir))
    else:
        config = load_config(args.config, overrides)
        if run_dir is None:
            stem = args.config.stem if args.config else config.model.name
            run_dir = Path("runs") / f"{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        # A run_dir holding a run is refused by the trainer, before it builds anything.
    result = Trainer(config, run_dir, resume=args.resume, command=command_line(args)).run()
    if int(os.environ.get("RANK", "0")) != 0:  # under torchrun, one summary: rank 0's
        return 0
    if result.score_name == "miou":
        from ..metrics import best_miou_text

        best = best_miou_text(result.best_score, result.history)
        plots = f", plots: {result.run_dir / 'plots'}"
        print(f"trained {result.steps} steps; best validation mIoU {best}")
    else:
        plots = ""
        print(f"trained {result.steps} steps; best validation mask AP {result.best_score:.4f}")
    print(f"run folder: {result.run_dir}  (best model: {result.run_dir / 'best'}{plots})")
    return 0
