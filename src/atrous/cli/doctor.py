"""``atrous doctor``: scan a dataset and report what would go wrong in training."""

from __future__ import annotations

import argparse

HELP = "scan a dataset: counts, sizes, label histogram, problems, suggested class weights"


def add_parser(parser: argparse.ArgumentParser) -> None:
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
    import yaml

    from ..data import build_dataset
    from ..data.doctor import format_report, scan_dataset
    from ..data.root import resolve_root

    options = {}
    for item in args.option:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--option expects KEY=VALUE, got {item!r}")
        options[key.strip()] = yaml.safe_load(value)
    dataset = build_dataset(args.dataset, root=resolve_root(args.dataset, args.root), split=args.split, **options)
    report = scan_dataset(dataset)
    print(format_report(report))
    return 0
