"""CamVid from scratch on this machine, for a fixed time budget; reports validation mIoU.

    python bench/camvid.py --minutes 20 --steps 400 [--set key=value ...]

Runs configs/deeplabv3plus_resnet50_os16_camvid.yaml with CPU-sized overrides (smaller
crops and batch), stops training when the budget is spent (or the steps are done), then
evaluates on the full validation split (101 images, 11 classes, void ignored) and prints
one line of results. The poly schedule is laid over --steps: choose it so that the steps
fit the budget (the script reports if the budget cut training short).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=20.0, help="training budget in minutes (default 20)")
    parser.add_argument("--steps", type=int, default=400, help="length of the poly schedule (default 400)")
    parser.add_argument("--run-dir", type=Path, default=ROOT / "runs" / "bench_camvid")
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()

    import torch

    from atrous.config import load_config
    from atrous.engine.trainer import Trainer

    data_root = Path(os.environ.get("ATROUS_DATA", ROOT.parent / "shared" / "data")) / "camvid"
    if not data_root.is_dir():
        raise SystemExit(f"CamVid not found at {data_root}; set ATROUS_DATA to the folder holding camvid/")
    overrides = [
        f"data.root={data_root}",
        "data.crop_size=[256, 256]",
        "data.batch_size=4",
        "data.workers=1",
        f"train.steps={args.steps}",
        f"train.max_time_s={args.minutes * 60}",
        f"train.warmup_steps={max(1, args.steps // 20)}",
        f"train.eval_every={10**9}",
        f"train.checkpoint_every={max(1, args.steps // 4)}",
        "train.log_every=10",
        "train.progress=false",
        *args.overrides,
    ]
    config = load_config(ROOT / "configs" / "deeplabv3plus_resnet50_os16_camvid.yaml", overrides)
    if args.run_dir.exists():
        import shutil

        shutil.rmtree(args.run_dir)
    start = time.perf_counter()
    result = Trainer(config, args.run_dir).run()
    wall = time.perf_counter() - start
    metrics = result.last_metrics or {}
    summary = {
        "model": config.model.name,
        "threads": torch.get_num_threads(),
        "budget_min": args.minutes,
        "steps_done": result.steps,
        "steps_planned": args.steps,
        "wall_min_incl_eval": round(wall / 60, 2),
        "val_miou": metrics.get("miou"),
        "val_pixel_accuracy": metrics.get("pixel_accuracy"),
        "per_class_iou": {k: v["iou"] for k, v in metrics.get("per_class", {}).items()},
    }
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
