"""``atrous predict``: label maps (palette PNG), colour overlays and probabilities for images.

Every output name is planned before the model loads (:mod:`atrous.cli.outputs`): an output
never replaces an input, an existing file is replaced only with ``--overwrite``, and
inputs whose outputs would share a name (``a/x.png`` and ``b/x.jpg``, ``X.png`` and
``x.png``) are told apart: the first, in command-line order, keeps its name, the others
get ``NAME-2``, ``NAME-3`` …, and the renaming is printed.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .common import (
    add_precision_option,
    add_tta_options,
    crf_record,
    expand_inputs,
    resolve_base_size,
    resolve_crf_option,
    resolve_flip,
    resolve_scales,
    resolve_tile,
)

HELP = "predict label maps and overlays for images (files, folders, globs)"


DEFAULT_SCORE_THRESHOLD = 0.5


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help="a run folder, a saved model folder, a checkpoint, or torchvision:NAME (e.g. deeplabv3_resnet101)"
    )
    parser.add_argument(
        "inputs", nargs="+", help="image files, folders or glob patterns (a file given twice is predicted once)"
    )
    parser.add_argument(
        "--out",
        "-o",
        type=Path,
        default=Path("predictions"),
        help="output folder (default predictions): NAME.png, NAME_overlay.png … for each input NAME.EXT; inputs "
        "whose names would collide (a/x.png, b/x.jpg) are written as x, x-2, x-3 … in command-line order",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace outputs that already exist (an input is never replaced)"
    )
    parser.add_argument("--alpha", type=float, default=0.5, help="overlay opacity (default 0.5)")
    parser.add_argument("--probabilities", action="store_true", help="also write NAME_probs.npy (classes, H, W)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    add_precision_option(parser)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (slow first image)")
    parser.add_argument(
        "--memory",
        default="2GiB",
        help="working-memory budget per image (default 2GiB); an image that cannot fit it is reported and skipped",
    )
    add_tta_options(parser)
    instance = parser.add_argument_group("instance models (Mask R-CNN)")
    instance.add_argument("--score-threshold", type=float, help="keep instances scoring at least this (default 0.5)")
    instance.add_argument("--masks", action="store_true", help="also write one PNG per instance: NAME_masks/NNN.png")
    instance.add_argument("--coco", type=Path, help="also write all instances as COCO results JSON to this file")


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import torch
    from tqdm import tqdm

    from ..data.errors import DatasetError
    from ..inference import Predictor, load_inference_model, save_label_png, save_rgb_png
    from ..models import task_of
    from ..runtime import resolve_device
    from ..utils.atomic import atomic_write
    from .outputs import writing

    if not 0.0 <= args.alpha <= 1.0:
        raise ValueError(f"--alpha must be between 0 and 1, got {args.alpha}")
    crf = resolve_crf_option(args)
    paths = _unique(expand_inputs(args.inputs))
    task = _task_before_loading(args.model, args.precision)
    names = _prepare(args, paths, task) if task else None  # refuse a bad plan before the (slow) load
    model = load_inference_model(args.model, args.precision)
    loaded_task = task_of(model)
    if names is None or loaded_task != task:  # only loading told (a checkpoint)
        names = _prepare(args, paths, loaded_task)
    if loaded_task == "instance":
        return _run_instance(args, model, paths, names)
    if args.output_stride:
        model.set_output_stride(args.output_stride)
    tile = resolve_tile(args, None)
    base_size = resolve_base_size(args.base_size, model, tile)
    predictor = Predictor(
        model,
        device=resolve_device(args.device),
        precision=args.precision,
        compile=args.compile,
        memory_budget=args.memory,
        scales=resolve_scales(args, [1.0]),
        flip=resolve_flip(args, False),
        tile=tile,
        crf=crf,
        base_size=base_size,
    )
    print(f"atrous predict: precision {predictor.precision}: {predictor.path.choice.summary()}", file=sys.stderr)
    if args.probabilities and predictor.temperature is not None:
        print(
            f"atrous predict: probabilities temperature-scaled by T = {predictor.temperature:.4g} "
            "(the model's temperature.json; labels are unchanged)",
            file=sys.stderr,
        )
    if crf is not None:
        print(f"atrous predict: crf {crf_record(crf)['preset'] or 'custom'}: {crf}", file=sys.stderr)
    out_of_memory = (MemoryError, getattr(torch, "OutOfMemoryError", MemoryError))
    failed = []
    for path, name in tqdm(list(zip(paths, names, strict=True)), desc="predict", unit="image", disable=len(paths) < 2):
        try:
            result = predictor(path, probabilities=args.probabilities)
        except (DatasetError, OSError, ValueError) as exc:  # unreadable, truncated, not an image …
            failed.append(path)
            tqdm.write(f"atrous predict: skipped {path}: {exc}", file=sys.stderr)
            continue
        except out_of_memory as exc:  # too large for --memory: the next image may fit
            failed.append(path)
            reason = f"{exc or 'out of memory'} (--memory {args.memory})"
            tqdm.write(f"atrous predict: skipped {path}: {reason}", file=sys.stderr)
            continue
        label = args.out / f"{name}.png"
        with writing(label):
            save_label_png(result.labels, result.palette, label)
        with writing(args.out / f"{name}_overlay.png"):
            save_rgb_png(result.overlay(args.alpha), args.out / f"{name}_overlay.png")
        if result.probabilities is not None:
            probs = result.probabilities.astype(np.float32)
            with writing(args.out / f"{name}_probs.npy"):
                atomic_write(args.out / f"{name}_probs.npy", lambda tmp, p=probs: _save_npy(tmp, p))
        tqdm.write(f"{path} -> {label}  ({result.mode}{_tile(result)})")
    return _report(failed, len(paths))


def _report(failed: list[Path], total: int) -> int:
    if failed:
        print(f"atrous predict: {len(failed)} of {total} images failed", file=sys.stderr)
        return 2
    return 0


def _unique(paths: list[Path]) -> list[Path]:
    from .outputs import unique_inputs

    unique, repeats = unique_inputs(paths)
    for path in repeats:
        print(f"atrous predict: {path} is given more than once; predicting it once", file=sys.stderr)
    return unique


def _task_before_loading(model: str, precision: str) -> str | None:
    """``semantic`` or ``instance`` from the model's config.json, so the outputs are checked
    before the model loads; None where only loading tells (a checkpoint, a broken folder)."""
    from ..inference.int8 import INFO_NAME
    from ..inference.torchvision_models import is_torchvision_spec
    from ..models import model_task

    if is_torchvision_spec(model) or precision == "int8":
        return "semantic"  # int8 models are semantic ones (atrous quantize)
    folder = Path(model)
    if (folder / INFO_NAME).is_file():
        return "semantic"
    for config in (folder / "config.json", folder / "best" / "config.json"):
        if config.is_file():
            try:
                return model_task(json.loads(config.read_text())["name"])
            except Exception:  # the loader reports a broken config properly
                return None
    return None


def _prepare(args: argparse.Namespace, paths: list[Path], task: str) -> list[str]:
    """Check the options for ``task``, plan every output, refuse a plan that would overwrite
    an input or (without --overwrite) an existing file, and clear a killed run's temporary
    files. Returns each input's output name."""
    from .outputs import Reads, add_model_files, check_folder, check_outputs, clear_stale, plan_names

    if task == "instance":
        tta = args.scales or args.ms or args.flip or args.output_stride or args.tile or args.crf or args.base_size
        if args.probabilities or tta:
            raise ValueError("--probabilities and the test-time options apply to semantic models, not instance ones")
        suffixes = ["_overlay.png", *(["_masks"] if args.masks else [])]
    else:
        if args.masks or args.coco or args.score_threshold is not None:
            raise ValueError(
                "--masks, --coco and --score-threshold are for instance models; this model is a semantic one"
            )
        suffixes = [".png", "_overlay.png", *(["_probs.npy"] if args.probabilities else [])]
    check_folder(args.out, "-o")
    names = plan_names(paths, suffixes)
    files = [args.out / f"{name}{s}" for name in names for s in suffixes if s != "_masks"]
    folders = [args.out / f"{name}_masks" for name in names] if "_masks" in suffixes else []
    if args.coco is not None:
        files.append(args.coco)
        check_folder(args.coco.parent, "--coco folder")
    reads = Reads()
    for path in paths:
        reads.add(path, "input image")
    add_model_files(reads, args.model, int8=True)
    check_outputs(files, reads, overwrite=args.overwrite, folders=folders)
    out = args.out.resolve()
    beside = next((p for p in paths if p.resolve().parent == out), None)
    if beside is not None:  # label maps among the photos: the next `predict photos/` would read them as photos
        raise ValueError(f"-o {args.out} is the folder of the input image {beside}: choose another output folder")
    clear_stale([args.out, *folders, *([args.coco.parent] if args.coco is not None else [])], "predict")
    for path, name in zip(paths, names, strict=True):
        if name != path.stem:
            print(f"atrous predict: {path} is written as {args.out / name}* (its name is taken)", file=sys.stderr)
    return names


def _save_npy(path: str, array) -> None:
    import numpy as np

    with open(path, "wb") as f:  # a file object: np.save would append .npy to a temporary name
        np.save(f, array)


def _tile(result) -> str:
    return f", tiles {result.tile}" if result.tile else ""


def _run_instance(args: argparse.Namespace, model, paths: list[Path], names: list[str]) -> int:
    """An overlay per image (one colour per instance), optional per-instance masks and COCO JSON."""
    from pycocotools import mask as mask_utils
    from tqdm import tqdm

    from ..data.errors import DatasetError
    from ..inference import InstancePredictor, save_rgb_png
    from ..inference.visualize import save_mask_png
    from ..runtime import resolve_device
    from ..utils.atomic import atomic_write_text
    from .outputs import writing

    if args.score_threshold is None:
        args.score_threshold = DEFAULT_SCORE_THRESHOLD
    predictor = InstancePredictor(model, device=resolve_device(args.device), score_threshold=args.score_threshold)
    records: list[dict] = []
    images: list[dict] = []
    failed = []
    progress = tqdm(list(zip(paths, names, strict=True)), desc="predict", unit="image", disable=len(paths) < 2)
    for image_id, (path, name) in enumerate(progress, start=1):
        try:
            result = predictor(path)
        except (DatasetError, OSError, ValueError, MemoryError) as exc:
            failed.append(path)
            tqdm.write(f"atrous predict: skipped {path}: {exc or type(exc).__name__}", file=sys.stderr)
            continue
        overlay = args.out / f"{name}_overlay.png"
        with writing(overlay):
            save_rgb_png(result.overlay(args.alpha), overlay)
        if args.masks:
            # --overwrite: an earlier run's masks beyond this run's count must not stay behind
            # looking like this run's instances.
            for old in (args.out / f"{name}_masks").glob("[0-9][0-9][0-9].png"):
                old.unlink()
            for i, mask in enumerate(result.masks):
                mask_path = args.out / f"{name}_masks" / f"{i:03d}.png"
                with writing(mask_path):
                    save_mask_png(mask, mask_path)
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
        class_names = list(getattr(model, "metadata", {}).get("class_names", []))
        categories = [{"id": i, "name": n} for i, n in enumerate(class_names) if i > 0]
        payload = {"images": images, "annotations": records, "categories": categories}
        with writing(args.coco):
            atomic_write_text(args.coco, json.dumps(payload) + "\n")
    return _report(failed, len(paths))
