"""``atrous models``: the registry, with parameter counts, optionally run on an image."""

from __future__ import annotations

import argparse
import time

HELP = "list the registered models (parameters; with --size, output shape and CPU time)"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("pattern", nargs="?", default="*", help="glob over model names, e.g. 'deeplab*'")
    parser.add_argument("--num-classes", type=int, default=21, help="classes to build each model with (default 21)")
    parser.add_argument("--size", type=int, help="also run a 1×3×SIZE×SIZE input and show output shape and time")


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import create_model, list_models
    from ..models import task_of

    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}")
    if args.size is not None and args.size < 1:
        raise ValueError(f"--size must be >= 1, got {args.size}")
    x = torch.randn(1, 3, args.size, args.size) if args.size else None
    width = max(len(n) for n in names)
    header = f"{'model':<{width}}  {'params (M)':>10}  {'OS':>2}"
    if x is not None:
        print(f"Input 1×3×{args.size}×{args.size}, {args.num_classes} classes, {torch.get_num_threads()} threads")
        header += f"  {'output shape':<20}  {'CPU s':>6}"
    print(header)
    print("-" * len(header))
    for name in names:
        model = create_model(name, num_classes=args.num_classes).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        instance = task_of(model) == "instance"
        line = f"{name:<{width}}  {params:>10.2f}  {'-' if instance else model.output_stride:>2}"
        if x is not None:
            start = time.perf_counter()
            with torch.inference_mode():
                out = model(list(x)) if instance else model(x)
            seconds = time.perf_counter() - start
            shape = f"{len(out[0]['boxes'])} instances" if instance else "×".join(str(s) for s in out.shape)
            line += f"  {shape:<20}  {seconds:>6.2f}"
        print(line, flush=True)
    return 0
