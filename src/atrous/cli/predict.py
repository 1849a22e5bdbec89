"""``atrous predict``: label maps (palette PNG) and colour overlays for image files."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_tta_options, expand_inputs, resolve_scales

HELP = "predict label maps and overlays for images (files, folders, globs)"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a run folder, a saved model folder, or a checkpoint")
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--out", "-o", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    add_tta_options(parser)


def run(args: argparse.Namespace) -> int:
    from ..data.constants import IMAGENET_MEAN, IMAGENET_STD
    from ..data.io import read_image
    from ..engine.trainer import resolve_device
    from ..inference import Predictor, default_palette, load_trained_model, overlay, save_label_png, save_rgb_png

    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be between 0 and 1, got {args.alpha}")
    paths = expand_inputs(args.inputs)
    model = load_trained_model(args.model)
    if args.output_stride:
        model.set_output_stride(args.output_stride)
    meta = model.metadata
    palette = meta.get("palette") or default_palette(model.num_classes)
    predictor = Predictor(
        model,
        device=resolve_device(args.device),
        mean=meta.get("mean", IMAGENET_MEAN),
        std=meta.get("std", IMAGENET_STD),
        scales=resolve_scales(args, [1.0]),
        flip=args.flip,
        tile=args.tile,
    )
    for path in paths:
        image = read_image(path)
        labels = predictor.predict(image).numpy()
        save_label_png(labels, palette, args.out / f"{path.stem}.png")
        save_rgb_png(
            overlay(image.permute(1, 2, 0).numpy(), labels, palette, args.alpha), args.out / f"{path.stem}_overlay.png"
        )
        print(f"{path} -> {args.out / (path.stem + '.png')}")
    return 0
