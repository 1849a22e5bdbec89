"""``atrous models``: the registry, with parameter counts."""

from __future__ import annotations

import argparse

HELP = "list the registered models with their parameter counts"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="glob over model names, e.g. 'deeplab*'")
    parser.add_argument("--num-classes", type=int, default=21, help="classes to build each model with (default 21)")


def run(args: argparse.Namespace) -> int:
    from .. import create_model, list_models

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}")
    width = max(len(n) for n in names)
    print(f"{'model':<{width}}  {'params (M)':>10}  {'output stride':>13}")
    for name in names:
        model = create_model(name, num_classes=args.num_classes)
        params = sum(p.numel() for p in model.parameters()) / 1e6
        print(f"{name:<{width}}  {params:>10.2f}  {model.output_stride:>13}")
    return 0
