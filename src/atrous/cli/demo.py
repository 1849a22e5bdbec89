"""``atrous demo``: build every registered model and run one image through it.

Until training lands this is the project's main job: it proves every model builds,
runs on an input of the size DeepLab evaluates at (3×513×513) and returns logits at
that size, and prints a table of parameters, output shape and CPU time.
"""

from __future__ import annotations

import argparse
import time

HELP = "build every registered model and run a 3×SIZE×SIZE image through it"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--size", type=int, default=513, help="input height and width (default 513)")
    parser.add_argument("--num-classes", type=int, default=21, help="classes (default 21, PASCAL VOC)")
    parser.add_argument("--pattern", default="*", help="glob over model names (default: all)")


def run(args: argparse.Namespace) -> int:
    import torch

    from .. import create_model, list_models

    if args.size < 1:
        raise ValueError(f"--size must be >= 1, got {args.size}")
    names = list_models(args.pattern)
    if not names:
        raise ValueError(f"no model matches {args.pattern!r}")
    torch.manual_seed(0)
    x = torch.randn(1, 3, args.size, args.size)
    width = max(len(n) for n in names)
    header = f"{'model':<{width}}  {'params (M)':>10}  {'OS':>2}  {'output shape':<20}  {'CPU s':>6}"
    print(f"Input 1×3×{args.size}×{args.size}, {args.num_classes} classes, {torch.get_num_threads()} threads")
    print(header)
    print("-" * len(header))
    for name in names:
        model = create_model(name, num_classes=args.num_classes).eval()
        params = sum(p.numel() for p in model.parameters()) / 1e6
        start = time.perf_counter()
        with torch.inference_mode():
            out = model(x)
        seconds = time.perf_counter() - start
        shape = "×".join(str(s) for s in out.shape)
        if tuple(out.shape[-2:]) != (args.size, args.size) or not torch.isfinite(out).all():
            raise RuntimeError(f"{name} returned {shape} with non-finite values or the wrong size")
        print(f"{name:<{width}}  {params:>10.2f}  {model.output_stride:>2}  {shape:<20}  {seconds:>6.2f}", flush=True)
    return 0
