"""``atrous demo``: the main job — train a small DeepLab v3+ on synthetic shapes, end to end.

It needs no files and no network: a DeepLab v3+ (ResNet-18) learns to segment procedural
shapes on textured, noisy backgrounds for a fixed budget of steps (about two minutes on
two CPU cores), is evaluated on a held-out synthetic split, and leaves in its run folder
the metrics log, plots, the best model and colour overlays of validation predictions.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "train a small DeepLab v3+ on a built-in synthetic dataset (about two minutes on a CPU)"

DEMO_RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "demo_deeplabv3plus_resnet18_synthetic.yaml"


DEMO_MARKER = ".atrous-demo"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--run-dir", type=Path, default=Path("runs/demo"), help="run folder (default runs/demo)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE", help="override the recipe"
    )
    parser.add_argument("--overlays", type=int, default=8, help="validation overlays to write (default 8)")


def run(args: argparse.Namespace) -> int:
    import shutil

    import numpy as np
    import torch

    from ..config import load_config
    from ..data.transforms import denormalize
    from ..engine.trainer import Trainer
    from ..inference import overlay, save_rgb_png
    from .common import command_line

    config = load_config(DEMO_RECIPE, args.overrides)
    if args.run_dir.exists():
        # The demo always starts afresh, but only ever deletes a folder an earlier demo made:
        # never a training run or anything else a user keeps there.
        if not args.run_dir.is_dir():
            raise ValueError(f"--run-dir {args.run_dir} is a file, not a folder")
        if _is_demo_folder(args.run_dir):
            shutil.rmtree(args.run_dir)
        elif any(args.run_dir.iterdir()):
            raise ValueError(
                f"--run-dir {args.run_dir} holds files that no earlier demo wrote (no {DEMO_MARKER}); "
                "choose another --run-dir or remove it yourself"
            )
    args.run_dir.mkdir(parents=True, exist_ok=True)
    (args.run_dir / DEMO_MARKER).write_text("written by atrous demo: the next demo may replace this folder\n")
    trainer = Trainer(config, args.run_dir, command=command_line(args))
    print(
        f"Training {config.model.name} on synthetic shapes ({trainer.num_classes} classes, "
        f"{len(trainer.train_set)} train / {len(trainer.val_set)} val images, "
        f"{config.train.steps} steps, device {trainer.device})"
    )
    result = trainer.run()

    # Overlays: prediction on the left half, ground truth on the right.
    model = trainer.eval_model.eval()  # what the run evaluated (the weight average with train.ema)
    palette = trainer.metadata["palette"]
    out = args.run_dir / "overlays"
    with torch.inference_mode():
        for i in range(min(args.overlays, len(trainer.val_set))):
            image, mask = trainer.val_set[i]
            pred = model(image.unsqueeze(0).to(trainer.device)).argmax(1)[0].cpu()
            rgb = denormalize(image).permute(1, 2, 0).numpy()
            side_by_side = np.concatenate([overlay(rgb, pred.numpy(), palette), overlay(rgb, mask.numpy(), palette)], 1)
            save_rgb_png(side_by_side, out / f"val_{i:03d}.png")

    final = result.last_metrics or {}
    print()
    print(
        f"validation mIoU {final.get('miou', float('nan')):.4f}  "
        f"pixel accuracy {final.get('pixel_accuracy', float('nan')):.4f}  "
        f"(best mIoU {result.best_miou:.4f}, {result.steps} steps)"
    )
    print(f"run folder:   {args.run_dir}")
    print(f"  metrics:    {args.run_dir / 'metrics.jsonl'}")
    print(f"  plots:      {args.run_dir / 'plots'}")
    print(f"  overlays:   {out}  (prediction | ground truth)")
    print(f"  best model: {args.run_dir / 'best'}  (atrous predict {args.run_dir} IMAGES)")
    return 0


def _is_demo_folder(folder: Path) -> bool:
    """A folder an earlier ``atrous demo`` wrote: it carries the marker. Nothing else counts —
    a training run of the demo's own model on synthetic data (the config's defaults) is a
    user's run like any other."""
    return (folder / DEMO_MARKER).is_file()
