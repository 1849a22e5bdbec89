"""``atrous doctor``: scan a dataset and report what would go wrong in training."""

from __future__ import annotations

import argparse

HELP = "scan a dataset: counts, sizes, label histogram, problems, suggested class weights"

# Scripts gate training on it: `atrous doctor folder --root d -o num_classes=2 && atrous train ...`.
# 3, not 1: 1 is an unexpected failure (a crash) and 2 bad usage or input, so a script can
# tell "the dataset has problems" from "the doctor could not run".
PROBLEMS_FOUND = 3
EXIT_STATUS = (
    "exit status: 0 no problems (suggestions, such as classes never present or strong "
    "imbalance, do not count); 3 problems found, listed under 'Problems:' (unreadable files, "
    "out-of-range labels, colour masks without color_map, size mismatches without "
    "resize_masks, labels that leave nothing to learn such as 0/255 masks whose 255 is "
    "'ignore'); 2 bad usage or input (unknown dataset or option, missing folder); 1 "
    "unexpected failure"
)


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.epilog = EXIT_STATUS
    parser.add_argument("dataset", help="dataset name: folder, camvid, voc, cityscapes, ade20k, synthetic")
    parser.add_argument("--root", help="dataset folder (default: $ATROUS_DATA/<dataset> where known)")
    parser.add_argument("--split", default="train", help="split to scan (default train)")
    parser.add_argument(
        "--option",
        "-o",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a dataset argument, e.g. -o num_classes=2 -o 'label_map={0: 0, 255: 1}' (YAML values)",
    )


def run(args: argparse.Namespace) -> int:
    from ..config import parse_yaml
    from ..data import build_dataset
    from ..data.doctor import format_report, scan_dataset
    from ..data.root import resolve_root

    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        options[key.strip()] = parse_yaml(value)  # YAML 1.2 numbers: 1e-3 is a float
    dataset = build_dataset(args.dataset, root=resolve_root(args.dataset, args.root), split=args.split, **options)
    report = scan_dataset(dataset)
    print(format_report(report))
    return 0 if report.ok else PROBLEMS_FOUND
