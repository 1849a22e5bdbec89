"""``atrous bench``: parameters, FLOPs, latency, throughput, memory, and the share of this
machine's measured ceiling, for the models given."""

from __future__ import annotations

import argparse
import json

HELP = "measure models' speed: GFLOPs, median latency, images/s, peak memory, share of the machine's ceiling"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "models",
        nargs="*",
        default=["deeplabv3_resnet50"],
        metavar="MODEL",
        help="registered model names, torchvision:NAME (torchvision's model, random weights) or a trained model "
        "(run folder, saved model; with --precision int8 its int8 model); default deeplabv3_resnet50",
    )
    parser.add_argument("--size", type=int, default=512, help="input side in pixels (default 512)")
    parser.add_argument("--batch", type=int, default=1, help="images per call (default 1)")
    parser.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16", "int8"),
        default="auto",
        help="auto (default) measures and picks what predict/train pick on this machine (the decision is shown); "
        "fp32 runs inference on the model as built, as predict --precision fp32 does; int8 runs a run's "
        "`atrous quantize` model",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--mode", choices=("infer", "train"), default="infer", help="inference or a training step")
    parser.add_argument("--repeats", type=int, default=10, help="timed runs per model after warm-up (>= 5, default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed runs first (default 2)")
    parser.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="build atrous models at this stride")
    parser.add_argument("--num-classes", type=int, default=21, help="classes (default 21)")
    parser.add_argument("--json", action="store_true", help="one JSON object per model instead of the table")


#: The options passed to :func:`atrous.benchmark.bench_model` as they are (same names).
_PASSED = ("mode", "precision", "batch", "size", "repeats", "warmup", "num_classes", "output_stride")


def _mib(n: int) -> str:
    return f"{n / 2**20:,.0f}"


def run(args: argparse.Namespace) -> int:
    import torch

    from ..benchmark import bench_model, conv_ceiling
    from ..benchmark.runner import check_precision
    from ..runtime import precision_dtype, resolve_device

    if args.size < 32 or args.batch < 1:
        raise ValueError(f"--size must be >= 32 and --batch >= 1, got {args.size} and {args.batch}")
    if args.repeats < 5:
        raise ValueError(f"--repeats must be at least 5, got {args.repeats}")
    device = resolve_device(args.device)
    check_precision(args.mode, args.precision, device)
    ceilings: dict[tuple, float] = {}

    def ceiling_for(precision: str, channels_last: bool) -> float:
        # int8 rows are set against the fp32 channels_last ceiling (no int8 conv is timed)
        dtype = precision_dtype(precision)
        key = (dtype, channels_last)
        if key not in ceilings:
            ceilings[key] = conv_ceiling(device, dtype, channels_last=channels_last, train=args.mode == "train")
        return ceilings[key]

    if not args.json:
        layout = "channels_last" if args.mode == "train" or args.precision != "fp32" else "NCHW"
        print(
            f"atrous bench: {args.mode}, {args.precision}, {layout}, batch {args.batch}×3×{args.size}×{args.size}, "
            f"{device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
        )
        width = max(len("model"), *(len(m) for m in args.models))
        header = (
            f"{'model':<{width}} {'prec':>4} {'layout':>6} {'params M':>8} {'GFLOPs':>8} {'median ms':>9} "
            f"{'img/s':>7} {'peak MiB':>9} {'GFLOP/s':>8} {'ceiling':>8} {'of ceil':>7}"
        )
        print(header)
        print("-" * len(header))
    decisions = []
    for name in args.models:
        result = bench_model(name, device=device, ceiling=ceiling_for, **{key: getattr(args, key) for key in _PASSED})
        if args.json:
            print(json.dumps(result.as_dict()), flush=True)
            continue
        peak = _mib(result.peak_memory_bytes) if result.peak_memory_bytes else "n/a"
        print(
            f"{name:<{width}} {result.precision:>4} {result.layout:>6} {result.params / 1e6:>8.2f} "
            f"{result.gflops:>8.1f} {result.latency_s * 1e3:>9.1f} {result.images_per_s:>7.2f} {peak:>9} "
            f"{result.achieved_gflops_per_s:>8.0f} {result.ceiling_gflops_per_s:>8.0f} {result.ceiling_fraction:>7.1%}",
            flush=True,
        )
        decisions.append(f"  {name}: {result.decision}")
    if decisions:
        print("ceiling: a 3×3 conv 256→256 on 128×128 in the row's precision, layout and mode (int8 rows: fp32's)")
        print("precision decisions:")
        print("\n".join(decisions))
    return 0
