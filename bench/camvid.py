"""CamVid from scratch on this machine, in the CPU recipe's time budget; validation mIoU and its curve.

    python bench/camvid.py                                   # configs/deeplabv3plus_mobilenetv2_camvid_cpu.yaml
    python bench/camvid.py --minutes 20 --steps 1400         # a shorter budget: lay the schedule over fewer steps
    python bench/camvid.py --config configs/deeplabv3plus_resnet18_camvid_cpu.yaml   # the faster one on AMX CPUs
    python bench/camvid.py --config configs/OTHER.yaml --set data.batch_size=4

Trains the recipe (default: the one sized for 2 CPU cores in under an hour, docs/benchmarks.md)
into a new run folder, evaluating on the full validation split (101 images at 360×480,
11 classes, void ignored, single scale) at the recipe's cadence and at the end, then prints
one JSON object: steps done, wall time, the final mIoU, pixel accuracy and per-class IoU,
and the learning curve (mIoU at every evaluation). The poly schedule is laid over
``train.steps``: with ``--minutes`` choose ``--steps`` so that they fit (the output says
whether the budget cut training short). An existing run folder is never replaced.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RECIPE = ROOT / "configs" / "deeplabv3plus_mobilenetv2_camvid_cpu.yaml"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, default=RECIPE, help="recipe (default: the CPU recipe)")
    parser.add_argument("--minutes", type=float, help="training budget (default: the recipe's train.max_time_s)")
    parser.add_argument("--steps", type=int, help="length of the poly schedule (default: the recipe's)")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "bench_camvid", help="a new folder")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()

    import torch

    from atrous.config import ConfigError, load_config
    from atrous.engine.trainer import Trainer

    data_root = Path(os.environ.get("ATROUS_DATA", ROOT.parent / "shared" / "data")) / "camvid"
    if not data_root.is_dir():
        print(f"bench/camvid.py: CamVid not found at {data_root}; set ATROUS_DATA to the folder holding camvid/")
        return 2
    if args.run_dir.exists():
        print(f"bench/camvid.py: --run-dir {args.run_dir} exists; give a new folder (nothing is replaced)")
        return 2
    overrides = [f"data.root={data_root}", "train.progress=false"]
    if args.minutes is not None:
        overrides.append(f"train.max_time_s={args.minutes * 60}")
    if args.steps is not None:
        # The recipe's proportions: warm-up over 1/40 of the schedule, four evaluations.
        overrides += [
            f"train.steps={args.steps}",
            f"train.warmup_steps={max(1, args.steps // 40)}",
            f"train.eval_every={max(1, args.steps // 4)}",
        ]
    try:
        config = load_config(args.config, [*overrides, *args.overrides])
    except ConfigError as exc:
        print(f"bench/camvid.py: {exc}")
        return 2
    start = time.perf_counter()
    result = Trainer(config, args.run_dir).run()
    wall = time.perf_counter() - start
    metrics = result.last_metrics or {}
    curve = [{"step": r["step"], "miou": round(r["miou"], 4)} for r in result.history if r["kind"] == "val"]
    summary = {
        "config": str(args.config),
        "model": config.model.name,
        "threads": torch.get_num_threads(),
        "budget_min": None if config.train.max_time_s is None else config.train.max_time_s / 60,
        "steps_done": result.steps,
        "steps_planned": config.train.steps,
        "cut_by_budget": result.steps < config.train.steps,
        "wall_min_incl_eval": round(wall / 60, 2),
        "val_miou": metrics.get("miou"),
        "val_pixel_accuracy": metrics.get("pixel_accuracy"),
        "per_class_iou": {k: round(v["iou"], 4) for k, v in metrics.get("per_class", {}).items()},
        "curve": curve,
    }
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
