"""``atrous quantize``: a trained semantic model to int8 (OpenVINO + NNCF, post-training static)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..inference.loading import INT8_FOLDER
from .common import add_config_options, run_config_path

HELP = "quantize a trained model to int8 for the CPU (OpenVINO; calibrated on training images)"
DEFAULT_CALIBRATION = 32
DEFAULT_CHECK = 16


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run",
        type=Path,
        metavar="RUN",
        help="a run folder (its config.yaml and best/ model), or a saved model or checkpoint with --config",
    )
    add_config_options(parser)
    parser.add_argument(
        "--calibration",
        type=int,
        default=DEFAULT_CALIBRATION,
        metavar="N",
        help=f"calibration images, evenly spaced over the split, at full size (default {DEFAULT_CALIBRATION})",
    )
    parser.add_argument("--split", help="the calibration split (default: the config's train split)")
    parser.add_argument(
        "--check",
        type=int,
        default=DEFAULT_CHECK,
        metavar="N",
        help=f"held-out images from the config's val split on which int8 labels are compared with float32's "
        f"(default {DEFAULT_CHECK}; 0 skips the check)",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=Path,
        metavar="FOLDER",
        help=f"the int8 model folder to write (default: RUN/{INT8_FOLDER})",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing int8 model folder (only an int8 model folder, and never one holding an input)",
    )
    parser.add_argument(
        "--output-stride",
        type=int,
        choices=(8, 16, 32),
        help="quantize the model at this output stride (an int8 model keeps the stride it was quantized at)",
    )


def run(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..export import ExportError
    from ..inference import load_trained_model
    from ..models import task_of
    from ..quantize import check_target, quantize_model
    from . import UsageError

    if args.calibration < 1:
        raise ValueError(f"--calibration must be at least 1 image, got {args.calibration}")
    if args.check < 0:
        raise ValueError(f"--check must be 0 (no check) or more images, got {args.check}")
    if not args.run.exists():
        raise FileNotFoundError(f"run folder {args.run} does not exist")
    run_dir = args.run if args.run.is_dir() else args.run.parent
    output = args.output or run_dir / INT8_FOLDER
    try:
        check_target(output, args.overwrite)
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    config_path = run_config_path(args.run, args.config, "give --config, the recipe the model was trained with")
    _check_output(args, output, config_path)
    config = load_config(config_path, args.overrides)

    model = load_trained_model(args.run)
    if task_of(model) != "semantic":
        raise ValueError("atrous quantize covers semantic models; Mask R-CNN (instance segmentation) is not supported")
    if args.output_stride:
        model.set_output_stride(args.output_stride)
    split = args.split or config.data.train_split
    dataset, indices = _evenly_spaced(config, split, args.calibration, model.num_classes)
    calibration = [dataset[i][0] for i in indices]
    check = None
    if args.check:  # read one at a time: full-size images add up
        check_set, check_indices = _evenly_spaced(config, config.data.val_split, args.check, model.num_classes)
        check = (check_set[i] for i in check_indices)
    try:
        report = quantize_model(
            model, calibration, output, overwrite=args.overwrite, check=check, progress=sys.stdout.isatty()
        )
    except ExportError as exc:
        raise UsageError(f"{exc} (nothing was written to {output})") from exc
    except FileExistsError as exc:
        raise UsageError(str(exc)) from None
    print(report.summary())
    if check is not None and split == config.data.val_split:
        print(f"  note: the check images come from the calibration split ({split}), so they are not held out")
    return 0


def _check_output(args: argparse.Namespace, output: Path, config_path: Path) -> None:
    """The rules of the other writing commands (atrous.cli.outputs), before the work: the
    folder replaced holds none of the model's files or the config, its parent can be
    written, and a killed run's temporary folders there are removed. Whether it may be
    replaced at all is check_target's (--overwrite, int8 folders only)."""
    from .outputs import Reads, add_model_files, check_folder, check_outputs, clear_stale

    reads = Reads()
    reads.add(config_path, "config")
    add_model_files(reads, args.run, int8=False)  # the int8 folder is the output, not an input
    check_folder(output.parent, "output's parent folder")
    check_outputs([], reads, overwrite=True, folders=[output])
    clear_stale([output.parent], "quantize")


def _evenly_spaced(config, split: str, count: int, num_classes: int) -> tuple[Any, list[int]]:
    """``split`` with the evaluation transforms (normalised (image, mask) pairs at full
    size), and ``count`` indices spread evenly over it (all of them when it is smaller)."""
    from ..engine.tasks.semantic import build_eval_dataset

    data = config.data
    dataset = build_eval_dataset(config, split)
    if len(dataset) == 0:
        raise ValueError(f"split {split!r} of dataset {data.dataset!r} has no images")
    if dataset.num_classes != num_classes:
        raise ValueError(f"the model predicts {num_classes} classes but the dataset has {dataset.num_classes}")
    count = min(count, len(dataset))
    return dataset, [i * len(dataset) // count for i in range(count)]
