"""``atrous predict``: label maps (palette PNG), colour overlays and probabilities for images."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .common import add_precision_option, add_tta_options, expand_inputs, resolve_scales

HELP = "predict label maps and overlays for images (files, folders, globs)"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help="a run folder, a saved model folder, a checkpoint, or torchvision:NAME (e.g. deeplabv3_resnet101)"
    )
    parser.add_argument("inputs", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--out", "-o", type=Path, default=Path("predictions"), help="output folder")
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    parser.add_argument("--probabilities", action="store_true", help="also write NAME_probs.npy (classes, H, W)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    add_precision_option(parser)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (slow first image)")
    parser.add_argument("--memory", default="2GiB", help="working-memory budget per image (default 2GiB)")
    add_tta_options(parser)
    instance = parser.add_argument_group("instance models (Mask R-CNN)")
    instance.add_argument(
        "--score-threshold", type=float, default=0.5, help="keep instances scoring at least this (default 0.5)"
    )
    instance.add_argument("--masks", action="store_true", help="also write one PNG per instance: NAME_masks/NNN.png")
    instance.add_argument("--coco", type=Path, help="also write all instances as COCO results JSON to this file")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    from tqdm import tqdm

    from ..atomic import atomic_write
    from ..data.errors import DatasetError
    from ..inference import Predictor, load_inference_model, save_label_png, save_rgb_png
    from ..runtime import resolve_device

    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be between 0 and 1, got {args.alpha}")
    paths = expand_inputs(args.inputs)
    model = load_inference_model(args.model, args.precision)
    if getattr(model, "task", "semantic") == "instance":
        return _run_instance(args, model, paths)
    if args.masks or args.coco:
        raise ValueError("--masks and --coco are for instance models; this model is a semantic one")
    if args.output_stride:
        model.set_output_stride(args.output_stride)
    predictor = Predictor(
        model,
        device=resolve_device(args.device),
        precision=args.precision,
        compile=args.compile,
        memory_budget=args.memory,
        scales=resolve_scales(args, [1.0]),
        flip=args.flip,
        tile=args.tile,
    )
    print(f"atrous predict: precision {predictor.precision}: {predictor.path.choice.summary()}", file=sys.stderr)
    failed = []
    for path in tqdm(paths, desc="predict", unit="image", disable=len(paths) < 2):
        try:
            result = predictor(path, probabilities=args.probabilities)
        except (DatasetError, OSError, ValueError) as exc:  # unreadable, truncated, not an image …
            failed.append(path)
            tqdm.write(f"atrous predict: skipped {path}: {exc}", file=sys.stderr)
            continue
        save_label_png(result.labels, result.palette, args.out / f"{path.stem}.png")
        save_rgb_png(result.overlay(args.alpha), args.out / f"{path.stem}_overlay.png")
        if result.probabilities is not None:
            probs = result.probabilities.astype(np.float32)
            atomic_write(args.out / f"{path.stem}_probs.npy", lambda tmp, p=probs: _save_npy(tmp, p))
        tqdm.write(f"{path} -> {args.out / (path.stem + '.png')}  ({result.mode}{_tile(result)})")
    if failed:
        print(f"atrous predict: {len(failed)} of {len(paths)} images failed", file=sys.stderr)
        return 2
    return 0


def _save_npy(path: str, array) -> None:
    import numpy as np

    with open(path, "wb") as f:  # a file object: np.save would append .npy to a temporary name
        np.save(f, array)


def _tile(result) -> str:
    return f", tiles {result.tile}" if result.tile else ""


def _run_instance(args: argparse.Namespace, model, paths: list[Path]) -> int:
    """An overlay per image (one colour per instance), optional per-instance masks and COCO JSON."""
    import json

    from pycocotools import mask as mask_utils
    from tqdm import tqdm

    from ..atomic import atomic_write_text
    from ..data.errors import DatasetError
    from ..inference import InstancePredictor, save_rgb_png
    from ..inference.visualize import save_mask_png
    from ..runtime import resolve_device

    if args.probabilities or args.scales or args.ms or args.flip or args.output_stride or args.tile:
        raise ValueError("--probabilities and the test-time options apply to semantic models, not instance ones")
    predictor = InstancePredictor(model, device=resolve_device(args.device), score_threshold=args.score_threshold)
    records: list[dict] = []
    images: list[dict] = []
    failed = []
    for image_id, path in enumerate(tqdm(paths, desc="predict", unit="image", disable=len(paths) < 2), start=1):
        try:
            result = predictor(path)
        except (DatasetError, OSError, ValueError) as exc:
            failed.append(path)
            tqdm.write(f"atrous predict: skipped {path}: {exc}", file=sys.stderr)
            continue
        save_rgb_png(result.overlay(args.alpha), args.out / f"{path.stem}_overlay.png")
        if args.masks:
            for i, mask in enumerate(result.masks):
                save_mask_png(mask, args.out / f"{path.stem}_masks" / f"{i:03d}.png")
        if args.coco is not None:
            height, width = result.image.shape[:2]
            images.append({"id": image_id, "file_name": str(path), "height": height, "width": width})
            records.extend(result.to_coco(image_id))
        tqdm.write(f"{path} -> {len(result)} instances (score >= {args.score_threshold})")
    if args.coco is not None:
        # A COCO instances file (images, categories, annotations with ids, areas and RLE masks)
        # whose annotations also carry their scores: COCO() reads it, loadRes takes its list.
        for number, record in enumerate(records, start=1):
            record.update(id=number, area=float(mask_utils.area(record["segmentation"])), iscrowd=0)
        names = list(getattr(model, "metadata", {}).get("class_names", []))
        categories = [{"id": i, "name": name} for i, name in enumerate(names) if i > 0]
        payload = {"images": images, "annotations": records, "categories": categories}
        atomic_write_text(args.coco, json.dumps(payload) + "\n")
    if failed:
        print(f"atrous predict: {len(failed)} of {len(paths)} images failed", file=sys.stderr)
        return 2
    return 0
