"""``atrous portrait``: keep the subject sharp and blur the background of a photo."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import add_precision_option, add_scale_flip_options, resolve_flip, resolve_scales

HELP = "portrait mode: blur a photo's background, keep the person (or another class, or a mask) sharp"

_JPEG_QUALITY = 95


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", type=Path, help="the photo")
    parser.add_argument(
        "output",
        type=Path,
        help="where to write the result (.png, .jpg, …; written atomically; never the photo or the mask)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it already exists")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--model",
        help="a run folder, a saved model folder, a checkpoint, or torchvision:NAME "
        "(deeplabv3_resnet101, deeplabv3_resnet50, fcn_resnet101, fcn_resnet50)",
    )
    source.add_argument(
        "--mask", type=Path, metavar="FILE", help="the subject as a mask image (0/255 or 0/1) instead of a model"
    )
    parser.add_argument(
        "--class",
        dest="subject_class",
        metavar="NAME|INDEX",
        help="with --model, the subject class name or index (default person, or class 1 of a two-class model)",
    )
    parser.add_argument(
        "--blur", type=float, default=25.0, metavar="PX", help="background blur radius in px (default 25)"
    )
    parser.add_argument(
        "--feather", type=float, metavar="PX", help="edge softness in px (default min(H, W) / 400, at least 1)"
    )
    parser.add_argument("--kernel", choices=("disc", "gaussian"), default="disc", help="blur shape (default disc)")
    parser.add_argument(
        "--inference-size",
        type=int,
        metavar="PX",
        help="with --model, the shorter side the model sees at most (default: the side the model was trained at, "
        "its data.base_size, else 520; 0: full resolution)",
    )
    add_scale_flip_options(parser)  # with --model: the person recipe's eval uses --flip --scales 0.75 1 1.25
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    add_precision_option(parser)


def run(args: argparse.Namespace) -> int:
    from PIL import Image

    from ..inference.loading import load_inference_model
    from ..inference.portrait import load_rgb, portrait
    from ..runtime import resolve_device
    from ..utils.atomic import atomic_write
    from .outputs import Reads, add_model_files, check_folder, check_outputs, clear_stale, writing

    if args.output.is_dir():
        raise ValueError(f"{args.output} is a folder; give the output's file name, e.g. {args.output / 'portrait.jpg'}")
    suffix = args.output.suffix.lower()
    fmt = Image.registered_extensions().get(suffix)
    if fmt is None or fmt not in Image.SAVE:
        raise ValueError(f"cannot tell an image format from the output name {args.output} (use .png or .jpg)")
    if args.inference_size is not None and args.inference_size < 0:
        raise ValueError(f"--inference-size must be 0 or more, got {args.inference_size}")
    if args.subject_class is not None and args.mask is not None:
        raise ValueError("--class chooses a model's class; it does not apply to --mask")
    if args.mask is not None and (args.scales or args.ms or args.flip):
        raise ValueError("--scales, --ms and --flip are test-time options of --model; they do not apply to --mask")
    scales = resolve_scales(args, [1.0])
    # The output is checked before anything is read: never the photo, the mask or the model.
    reads = Reads()
    reads.add(args.input, "input photo")
    if args.mask is not None:
        reads.add(args.mask, "--mask")
    add_model_files(reads, args.model)
    check_folder(args.output.parent, "output folder")
    check_outputs([args.output], reads, overwrite=args.overwrite)
    clear_stale([args.output.parent], "portrait")
    image = load_rgb(args.input)  # unreadable input fails here, before a model is loaded
    if args.mask is not None and args.precision != "auto":
        raise ValueError("--precision applies to --model; a --mask needs no model")
    model = load_inference_model(args.model, args.precision) if args.model is not None else None
    result = portrait(
        image,
        model=model,
        mask=args.mask,
        subject_class=args.subject_class,
        blur=args.blur,
        feather=args.feather,
        kernel=args.kernel,
        device=resolve_device(args.device),
        # Given: that side (0: the photo's own); else the model's data.base_size, or 520.
        **({} if args.inference_size is None else {"inference_size": args.inference_size or None, "base_size": None}),
        precision=args.precision,
        **({} if model is None else {"scales": scales, "flip": resolve_flip(args, False)}),
    )
    picture = Image.fromarray(result)
    options = {"quality": _JPEG_QUALITY} if fmt == "JPEG" else {}
    with writing(args.output):
        atomic_write(args.output, lambda tmp: picture.save(tmp, format=fmt, **options))
    print(f"{args.input} -> {args.output}")
    return 0
