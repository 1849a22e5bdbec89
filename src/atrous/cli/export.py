"""``atrous export``: a trained model to ONNX or a ``torch.export`` program, any input size."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

HELP = "export a trained model to ONNX or a torch.export program (dynamic batch, height and width)"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", help="a saved model folder, a run folder, a checkpoint, or torchvision:NAME (see docs/inference.md)"
    )
    parser.add_argument(
        "--format",
        "-f",
        choices=("onnx", "exported-program"),
        default="onnx",
        help="onnx (default) or exported-program (torch.export.save, a .pt2 file)",
    )
    parser.add_argument(
        "--output",
        "-o",
        type=str,
        help="file to write (default: model.onnx or model.pt2 beside the model; NAME.onnx for torchvision:NAME); "
        "never one of the model's own files",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace the output file if it already exists (an earlier export)"
    )
    parser.add_argument("--opset", type=int, help="ONNX opset (default 18)")
    parser.add_argument(
        "--no-verify",
        dest="verify",
        action="store_false",
        help="skip the comparison with PyTorch at two input sizes before the file is moved into place",
    )


def run(args: argparse.Namespace) -> int:
    from ..export import DEFAULT_OPSET, SUFFIXES, ExportError, default_path, export_model, model_name
    from ..inference import load_trained_model
    from ..inference.torchvision_models import PREFIX, is_torchvision_spec
    from . import UsageError
    from .outputs import Reads, add_model_files, check_folder, check_outputs, clear_stale

    if not is_torchvision_spec(args.model) and not Path(args.model).exists():
        raise FileNotFoundError(f"model {args.model} does not exist")
    output = None if args.output is None else Path(args.output)
    if args.output is not None and (args.output.endswith(("/", os.sep)) or output.is_dir()):
        raise ValueError(
            f"-o {args.output} is a folder; give the file's name, e.g. {output / ('model' + SUFFIXES[args.format])}"
        )
    if output is None:
        if is_torchvision_spec(args.model):  # torchvision:NAME has no folder of its own
            output = Path(f"{args.model[len(PREFIX) :]}{SUFFIXES[args.format]}")
        else:
            output = default_path(args.model, args.format)
    # Checked before the model loads: never onto the model's files, never a silent replace.
    reads = Reads()
    add_model_files(reads, args.model)
    check_folder(output.parent, "output folder")
    check_outputs([output], reads, overwrite=args.overwrite)
    clear_stale([output.parent], "export")
    if output.suffix.lower() != SUFFIXES[args.format]:  # a .pt2 archive named .onnx, or the reverse
        raise ValueError(
            f"-o {output}: the {args.format} format is written as a {SUFFIXES[args.format]} file; "
            f"name it so (e.g. {output.with_suffix(SUFFIXES[args.format])}) or choose the format with -f"
        )
    model = load_trained_model(args.model)
    checks = []
    try:
        path = export_model(model, output, format=args.format, opset=args.opset, verify=args.verify, checks=checks)
    except ExportError as exc:
        raise UsageError(f"{exc} (nothing was written to {output})") from exc
    detail = f"opset {args.opset or DEFAULT_OPSET}, " if args.format == "onnx" else ""
    print(f"wrote {path}: {model_name(model)} as {args.format} ({detail}dynamic batch, height and width)")
    for check in checks:
        print(f"  matches PyTorch on {check}")
    return 0
