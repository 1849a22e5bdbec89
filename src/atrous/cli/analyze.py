"""``atrous analyze``: what atrous convolution does in a model (docs/analysis.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "show what atrous convolution does in a model: receptive fields, valid weights, ASPP advice, effective fields"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model",
        metavar="MODEL",
        help="a registered model name (random weights, built on the meta device), or a saved model folder, "
        "a run folder or a checkpoint (trained weights)",
    )
    parser.add_argument(
        "--size", type=int, nargs=2, metavar=("H", "W"), default=[513, 513], help="input size (default 513 513)"
    )
    parser.add_argument(
        "--output-stride", type=int, metavar="N", help="analyse at output stride 8, 16 or 32 (default: the model's own)"
    )
    parser.add_argument(
        "--json", type=Path, metavar="FILE", help="also write every number of the report to this JSON file"
    )
    parser.add_argument(
        "-o",
        "--output-dir",
        type=Path,
        metavar="DIR",
        help="write the plots here: the valid-weight curve, the model's dilated convolutions on it, and an "
        "effective-receptive-field heat map per stage",
    )
    parser.add_argument(
        "--erf-size",
        type=int,
        nargs=2,
        metavar=("H", "W"),
        default=[97, 97],
        help="input size of the effective-receptive-field probe, which runs on the CPU (default 97 97)",
    )
    parser.add_argument(
        "--erf-samples",
        type=int,
        default=2,
        metavar="N",
        help="random inputs the effective fields average over (default 2)",
    )
    parser.add_argument(
        "--no-erf", action="store_true", help="skip the effective receptive fields (the only slow part)"
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="replace an existing --json file or plots (never a model file)"
    )


def run(args: argparse.Namespace) -> int:
    from ..analysis import analyze, format_report, load_for_analysis
    from ..analysis.plots import figure_names, write_figures
    from ..analysis.report import add_effective_fields, probes_of

    _check_args(args)
    model = load_for_analysis(args.model)
    # Checked before any work: the names follow from the architecture.
    kinds = [] if args.no_erf else model.weight_kinds
    names = figure_names(model.arch, kinds) if args.output_dir is not None else []
    _check_outputs(args, [args.output_dir / n for n in names])
    analysis = analyze(model, args.size, output_stride=args.output_stride, erf=False, name=str(args.model))
    probes = [] if args.no_erf else probes_of(model)
    if probes:
        add_effective_fields(analysis, probes, args.erf_size, samples=args.erf_samples)
    print(format_report(analysis))
    if args.json is not None:
        _write_json(args.json, analysis.as_dict())
        print(f"\nwrote {args.json}")
    if args.output_dir is not None:
        written = write_figures(analysis, args.output_dir)
        print(f"\nwrote {len(written)} plot(s) to {args.output_dir}:")
        for path in written:
            print(f"  {path}")
    return 0


def _check_args(args: argparse.Namespace) -> None:
    if min(args.size) < 1:
        raise ValueError(f"--size must be two positive sides, got {args.size[0]} {args.size[1]}")
    if args.output_stride is not None and args.output_stride not in (8, 16, 32):
        raise ValueError(f"--output-stride must be 8, 16 or 32, got {args.output_stride}")
    if not args.no_erf:
        if min(args.erf_size) < 1:
            raise ValueError(f"--erf-size must be two positive sides, got {args.erf_size[0]} {args.erf_size[1]}")
        if args.erf_samples < 1:
            raise ValueError(f"--erf-samples must be >= 1, got {args.erf_samples}")


def _check_outputs(args: argparse.Namespace, plots: list[Path]) -> None:
    """The outputs can be written, are not the model's files, and (without --overwrite)
    replace nothing."""
    from .outputs import Reads, add_model_files, check_folder, check_outputs, clear_stale

    reads = Reads()
    if Path(args.model).exists():
        add_model_files(reads, args.model)
    files, folders = list(plots), []
    if args.json is not None:
        check_folder(args.json.parent, "--json folder")
        files.append(args.json)
        folders.append(args.json.parent)
    if args.output_dir is not None:
        check_folder(args.output_dir, "--output-dir")
        folders.append(args.output_dir)
    check_outputs(files, reads, overwrite=args.overwrite)
    clear_stale(folders, "analyze")


def _write_json(path: Path, record: dict) -> None:
    from ..utils.atomic import atomic_write_text
    from .outputs import writing

    with writing(path):
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")
