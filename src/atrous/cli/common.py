"""Pieces several subcommands share: config options, device choice, input expansion."""

from __future__ import annotations

import argparse
import glob
import math
from pathlib import Path

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
# atrous.inference.crf.PRESETS' names (tested equal), here so that building the parser
# imports no inference code; --crf alone means the first.
CRF_PRESETS = ("deeplab_v2", "deeplab_largefov", "deeplab_v1")


def add_config_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", "-c", type=Path, help="a YAML recipe (configs/*.yaml)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override one config value, e.g. --set train.lr=0.02 (repeatable)",
    )


def run_config_path(model: Path, config: Path | None, need: str) -> Path:
    """The recipe to read: ``--config`` when given, else the ``config.yaml`` of the run
    folder that holds ``model`` (the folder itself, or a checkpoint's folder)."""
    if config is not None:
        return config
    if not model.exists():
        raise FileNotFoundError(f"model {model} does not exist (a run folder, its best/ or a checkpoint)")
    path = (model if model.is_dir() else model.parent) / "config.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"no --config given and {path} does not exist: {need}")
    return path


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--precision",
        default="auto",
        choices=("auto", "fp32", "bf16", "fp16", "int8"),
        help="auto (default): the fast path in fp32 or bf16, whichever measures faster on this machine with the "
        "same labels (cached per machine); fp32: the model as trained; int8: the model `atrous quantize` wrote",
    )


def add_scale_flip_options(parser: argparse.ArgumentParser) -> None:
    """``--scales``, ``--ms``, ``--flip``: test-time augmentation (DeepLab v3 §4.3); see :func:`resolve_scales`."""
    parser.add_argument("--scales", type=float, nargs="+", help="test scales; --ms uses DeepLab v3's 0.5 … 1.75 (§4.3)")
    parser.add_argument("--ms", action="store_true", help="multi-scale test: scales 0.5, 0.75, 1.0, 1.25, 1.5, 1.75")
    parser.add_argument(
        "--flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="add left-right flipped inputs; --no-flip: none, also where the run's recipe sets eval.flip",
    )


def add_tta_options(parser: argparse.ArgumentParser) -> None:
    add_scale_flip_options(parser)
    parser.add_argument(
        "--base-size",
        type=_non_negative_int,
        metavar="PX",
        help="the network sees each image at this shorter side, results at the image's size (default: the side the "
        "model was trained at, its data.base_size, if any; 0: the image's own size)",
    )
    parser.add_argument("--output-stride", type=int, choices=(8, 16, 32), help="evaluate at this output stride")
    parser.add_argument(
        "--tile",
        type=_non_negative_int,
        metavar="PX",
        help="predict in tiles of this size (overlap-tile for the unpadded U-Net, U-Net §2); 0: the whole image at "
        "once (eval: instead of the recipe's eval.tile)",
    )
    parser.add_argument(
        "--crf",
        nargs="?",
        const=CRF_PRESETS[0],
        choices=CRF_PRESETS,
        metavar="PRESET",
        help="refine each image's class probabilities with DeepLab's fully connected CRF (v1 §4, v2 §3.2) before "
        f"taking labels; PRESET: {', '.join(CRF_PRESETS)} (default {CRF_PRESETS[0]}: DeepLab v2 ResNet-101's "
        "values; largefov = v1: VGG-16 LargeFOV's); about 0.5-1 s per 360x480 image on 2 CPU cores",
    )
    parser.add_argument(
        "--crf-iterations",
        type=_non_negative_int,
        metavar="N",
        help="mean-field iterations of --crf (default 10, as DeepLab)",
    )


def resolve_crf_option(args: argparse.Namespace):
    """``--crf`` and ``--crf-iterations`` as :class:`~atrous.inference.CRFParams`, or None."""
    if args.crf is None:
        if args.crf_iterations is not None:
            raise ValueError("--crf-iterations needs --crf")
        return None
    from ..inference.crf import resolve_crf

    return resolve_crf(args.crf, args.crf_iterations)


def crf_record(params) -> dict | None:
    """What --json records of the CRF: the preset's name (None for custom values) and every value."""
    if params is None:
        return None
    from ..inference.crf import crf_name

    return {"preset": crf_name(params), **params.as_dict()}


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a non-negative integer, got {value}")
    return value


def resolve_base_size(flag: int | None, model, tile: int | None = None) -> int | None:
    """``--base-size`` (``flag``; 0: none), else the side ``model`` was trained at (its
    ``data.base_size``); refused beside ``--tile``, which tiles images at their own size."""
    from ..inference.tta import model_base_size

    base_size = model_base_size(model, "model" if flag is None else (flag or None))
    if base_size is not None and tile:
        raise ValueError(
            f"--tile {tile} tiles each image at its own size, the model sees images at the shorter side {base_size} "
            "(--base-size): give --base-size 0 to tile"
        )
    return base_size


def resolve_flip(args: argparse.Namespace, default: bool) -> bool:
    """``--flip`` / ``--no-flip`` when given, else ``default`` (eval: the recipe's ``eval.flip``)."""
    return default if args.flip is None else args.flip


def resolve_tile(args: argparse.Namespace, default: int | None) -> int | None:
    """``--tile`` when given (0: whole images, None), else ``default`` (eval: the recipe's ``eval.tile``)."""
    return default if args.tile is None else (args.tile or None)


def resolve_scales(args: argparse.Namespace, default: list[float]) -> list[float]:
    from ..inference.tta import DEEPLAB_SCALES

    if args.ms and args.scales:
        raise ValueError("give --ms or --scales, not both")
    if args.ms:
        return list(DEEPLAB_SCALES)
    scales = args.scales or default
    if not all(math.isfinite(s) and s > 0 for s in scales):
        raise ValueError(f"--scales must be positive finite numbers, got {scales}")
    return scales


def expand_inputs(inputs: list[str]) -> list[Path]:
    """Files, folders (their images, sorted) and glob patterns → image paths, in order."""
    paths: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise FileNotFoundError(f"folder {p} has no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
            paths.extend(found)
        elif p.is_file():
            paths.append(p)
        elif any(ch in item for ch in "*?["):
            matches = sorted(Path(m) for m in glob.glob(item, recursive=True) if Path(m).is_file())
            if not matches:
                raise FileNotFoundError(f"pattern {item!r} matches no file")
            paths.extend(matches)
        else:
            raise FileNotFoundError(f"input {item} does not exist")
    return paths


def command_line(args: argparse.Namespace) -> str:
    """The command that is running, as a user would type it (``atrous train -c …``), for records."""
    import shlex

    return " ".join(["atrous", *(shlex.quote(a) for a in getattr(args, "argv", []))])
