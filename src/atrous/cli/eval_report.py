"""``atrous eval RUN --report DIR``: the report's options, checked before any work, and its run.

``--compare OTHER`` names what the report is compared with, on the same images:

* a setting of the same model — ``flip``, ``noflip``, ``ms`` (DeepLab v3's scales),
  ``scales=0.75,1,1.25``, ``os=8`` (output stride 8, 16 or 32), ``tile=N``, ``notile``,
  ``precision=fp32`` (auto, fp32, bf16, fp16), ``crf`` / ``crf=PRESET`` / ``nocrf`` (the
  dense CRF of DeepLab v1/v2 on or off) — or several joined by ``+``
  (``os=8+ms+flip``), each replacing that option of the report's own evaluation;
* another model: a run folder, a saved model folder or a checkpoint, evaluated with the
  report's options. A folder named like a setting is written ``./flip``.
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .common import crf_record

SETTINGS = (
    "flip, noflip, ms, scales=S1,S2,…, os=8|16|32, tile=N, notile, precision=auto|fp32|bf16|fp16, "
    "crf, crf=PRESET, nocrf"
)
COMPARE_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def add_report_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("report (semantic models; docs/evaluation.md)")
    group.add_argument(
        "--report",
        type=Path,
        metavar="DIR",
        help="write report.html, report.json and PNGs to DIR (must not exist or be empty, unless --overwrite): "
        "95%% intervals, boundary IoU, trimap accuracy, calibration, IoU by object size, worst images",
    )
    group.add_argument(
        "--bootstrap", type=int, metavar="B", help="bootstrap resamples over images for the intervals (default 1000)"
    )
    group.add_argument(
        "--seed", type=int, help="seed of the bootstrap and of the calibration's pixel sample (default 0)"
    )
    group.add_argument(
        "--compare",
        metavar="OTHER",
        help=f"paired comparison with another model folder or a setting: {SETTINGS}; join settings with +",
    )
    group.add_argument("--worst", type=int, metavar="K", help="how many worst images to draw (default 6)")
    group.add_argument(
        "--fit-temperature",
        action="store_true",
        help="store the fitted temperature as temperature.json in the model folder (predict's --probabilities then "
        "uses it; labels never change)",
    )


@dataclass(frozen=True)
class CompareSpec:
    """What ``--compare`` named: option changes of the same model, or another model."""

    label: str
    changes: dict[str, Any] = field(default_factory=dict)
    model: Path | None = None


@dataclass(frozen=True)
class ReportPlan:
    folder: Path
    resamples: int
    seed: int
    worst: int
    compare: CompareSpec | None
    temperature_folder: Path | None  # where --fit-temperature writes, else None


def parse_compare(text: str) -> CompareSpec:
    """``--compare``'s value as a :class:`CompareSpec`; a ValueError naming the flag otherwise."""
    from ..inference.tta import DEEPLAB_SCALES

    changes: dict[str, Any] = {}
    unknown = []
    for part in text.split("+"):
        key, _, value = part.strip().partition("=")
        if part in ("flip", "noflip"):
            changes["flip"] = part == "flip"
        elif part == "ms":
            changes["scales"] = list(DEEPLAB_SCALES)
        elif part == "notile":
            changes["tile"] = None
        elif part == "nocrf":
            changes["crf"] = None
        elif key == "crf":
            from ..inference.crf import DEFAULT_PRESET, resolve_crf

            try:
                changes["crf"] = resolve_crf(value or DEFAULT_PRESET)
            except ValueError as exc:
                raise ValueError(f"--compare {text}: {exc}") from None
        elif key == "scales":
            changes["scales"] = _scales(text, value)
        elif key == "os":
            if value not in ("8", "16", "32"):
                raise ValueError(f"--compare {text}: the output stride (os=) must be 8, 16 or 32, got {value!r}")
            changes["output_stride"] = int(value)
        elif key == "tile":
            if not value.isdigit() or int(value) < 1:
                raise ValueError(f"--compare {text}: tile= must be a positive integer, got {value!r}")
            changes["tile"] = int(value)
        elif key == "precision":
            if value not in COMPARE_PRECISIONS:
                raise ValueError(f"--compare {text}: precision= must be one of {', '.join(COMPARE_PRECISIONS)}")
            changes["precision"] = value
        else:
            unknown.append(part)
    if not unknown:
        return CompareSpec(text, changes)
    if len(unknown) == 1 and not changes and os.path.exists(text):
        return CompareSpec(text, model=Path(text))
    raise ValueError(
        f"--compare {text}: {unknown[0]!r} is neither a setting ({SETTINGS}; join with +) "
        "nor an existing run folder, model folder or checkpoint"
    )


def _scales(text: str, value: str) -> list[float]:
    try:
        scales = [float(v) for v in value.split(",")]
    except ValueError:
        raise ValueError(f"--compare {text}: scales= takes numbers separated by commas, got {value!r}") from None
    if not scales or any(not s > 0 for s in scales):
        raise ValueError(f"--compare {text}: scales= must be positive, got {value!r}")
    return scales


def check_report_options(args: argparse.Namespace, config_path: Path, config) -> ReportPlan | None:
    """Before the model loads: the report's flags make sense, DIR can take the report, and
    ``temperature.json`` may be written. ``None`` without ``--report``."""
    given = {
        "--bootstrap": args.bootstrap,
        "--seed": args.seed,
        "--compare": args.compare,
        "--worst": args.worst,
        "--fit-temperature": True if args.fit_temperature else None,
    }
    if args.report is None:
        for flag, value in given.items():
            if value is not None:
                raise ValueError(f"{flag} is a report option: add --report DIR")
        return None
    resamples = 1000 if args.bootstrap is None else args.bootstrap
    if resamples < 1:
        raise ValueError(f"--bootstrap must be at least 1 resample, got {resamples}")
    seed = 0 if args.seed is None else args.seed
    if seed < 0:
        raise ValueError(f"--seed must be >= 0, got {seed}")
    worst = 6 if args.worst is None else args.worst
    if worst < 0:
        raise ValueError(f"--worst must be >= 0, got {worst}")
    _refuse_instance_models(config)
    compare = parse_compare(args.compare) if args.compare is not None else None
    temperature_folder = _temperature_folder(args) if args.fit_temperature else None
    _check_folder(args, config_path, config)
    return ReportPlan(args.report, resamples, seed, worst, compare, temperature_folder)


def _refuse_instance_models(config) -> None:
    from ..models import model_task

    name = getattr(config.model, "name", None)
    try:
        task = model_task(name) if name else None
    except Exception:  # an unknown name: loading the model reports it properly
        task = None
    if task == "instance":
        raise ValueError(
            f"--report applies to semantic models; {name} is an instance model (atrous eval reports its COCO AP "
            "without --report)"
        )


def _temperature_folder(args: argparse.Namespace) -> Path:
    from ..inference.loading import model_folder
    from ..inference.temperature import TEMPERATURE_NAME

    if args.precision == "int8":
        raise ValueError("--fit-temperature applies to the model's own weights, not its int8 copy (--precision int8)")
    folder = model_folder(args.model) if Path(args.model).is_dir() else None
    if folder is None:
        raise ValueError(
            f"--fit-temperature writes temperature.json beside the model's config.json: give a run folder or a saved "
            f"model folder, not {args.model}"
        )
    target = folder / TEMPERATURE_NAME
    if os.path.lexists(target) and not args.overwrite:
        raise ValueError(f"--fit-temperature: {target} already exists; pass --overwrite to replace it")
    return folder


def _check_folder(args: argparse.Namespace, config_path: Path, config) -> None:
    """DIR never holds or replaces an input; it must be empty unless --overwrite."""
    from .outputs import OutputConflict, Reads, add_model_files, check_folder, check_outputs, clear_stale

    folder = args.report
    check_folder(folder, "--report")
    reads = Reads()
    reads.add(config_path, "config")
    add_model_files(reads, args.model)
    if args.compare is not None and os.path.exists(args.compare):
        add_model_files(reads, args.compare)
    if config.data.root:
        reads.add_tree(config.data.root, "dataset")
    check_outputs([], reads, overwrite=True, folders=[folder])  # emptiness is checked below
    clear_stale([folder], "eval")
    if folder.is_dir() and any(folder.iterdir()) and not args.overwrite:
        raise OutputConflict(f"--report {folder} is not empty; choose a new folder or pass --overwrite")


def load_compared_model(spec: CompareSpec, precision: str, model, device):
    """The model ``--compare`` names, loaded and checked against ``model`` before the report's
    first pass (a file that is no model must not cost an evaluation first); None for settings."""
    from ..inference import load_inference_model
    from ..models import task_of

    if spec.model is None:
        return None
    try:
        other = load_inference_model(spec.model, precision).to(device)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"--compare {spec.label}: {exc}") from exc
    if task_of(other) != "semantic":
        raise ValueError(f"--compare {spec.label}: an instance model cannot be compared with a semantic one")
    if getattr(other, "num_classes", None) != model.num_classes:
        raise ValueError(
            f"--compare {spec.label}: that model predicts {other.num_classes} classes, this one {model.num_classes}"
        )
    return other


def compared_run(spec: CompareSpec, settings: dict[str, Any], model, device, other):
    """The inference path and the options (scales, flip, output stride, tile, precision) of
    the compared evaluation: ``(path, options)``. ``other``: the compared model that
    :func:`load_compared_model` loaded before the report's first pass (None for settings)."""
    from ..inference import inference_path
    from .common import resolve_base_size

    own = {key: settings[key] for key in ("scales", "flip", "output_stride", "tile", "precision", "base_size")}
    own["crf"] = settings["crf_flag"]
    options = dict(own)
    if other is not None:
        if settings["output_stride_flag"]:
            other.set_output_stride(settings["output_stride_flag"])
        options["output_stride"] = other.output_stride
        # The other model at the shorter side it was trained at, unless --base-size says otherwise.
        options["base_size"] = resolve_base_size(settings["base_size_flag"], other)
        return inference_path(other.eval(), device, settings["precision_flag"]), options
    options.update(spec.changes)
    if options == own:
        raise ValueError(f"--compare {spec.label}: the report already evaluates with that setting; compare another")
    if "output_stride" in spec.changes:
        model.set_output_stride(spec.changes["output_stride"])
    precision = spec.changes.get("precision", settings["precision_flag"])
    return inference_path(model.eval(), device, precision), options


def run_report(args: argparse.Namespace, plan: ReportPlan, context: dict[str, Any]) -> int:
    """After the report's pass: the compared pass, the numbers, the summary and the files."""
    import numpy as np
    import torch

    from ..data.constants import IMAGENET_MEAN, IMAGENET_STD
    from ..engine.evaluator import evaluate
    from ..engine.report import (
        HTML_NAME,
        JSON_NAME,
        Comparison,
        ImageMatrices,
        build_report,
        report_json,
        summary_text,
        write_report,
    )
    from ..utils.atomic import atomic_write_text
    from .outputs import resolved, writing

    model, device, loader, settings = context["model"], context["device"], context["loader"], context["settings"]
    comparison = None
    if plan.compare is not None:
        path, options = compared_run(plan.compare, settings, model, device, context["compared_model"])
        hook = ImageMatrices(model.num_classes)
        print(f"atrous eval: comparing with {plan.compare.label} (a second pass over the split)", file=sys.stderr)
        with torch.inference_mode():
            evaluate(
                path,
                loader,
                model.num_classes,
                device=device,
                scales=options["scales"],
                flip=options["flip"],
                progress=True,
                tile=options["tile"],
                tile_overlap=settings["tile_overlap"],
                base_size=options["base_size"],
                on_batch=hook,
                crf=options["crf"],
                mean=IMAGENET_MEAN,  # the normalisation build_eval_dataset applies
                std=IMAGENET_STD,
            )
        options["precision"] = path.precision
        options["crf"] = crf_record(options["crf"])
        comparison = Comparison(plan.compare.label, hook.stacked(), options)
    record_settings = {key: value for key, value in settings.items() if not key.endswith("_flag")}
    record_settings.pop("tile_overlap", None)
    report = build_report(
        context["collector"].result(),
        context["metrics"],
        np.asarray(context["matrix"].cpu()),
        context["names"],
        context["palette"],
        settings=record_settings,
        image_names=context["image_names"],
        resamples=plan.resamples,
        seed=plan.seed,
        comparison=comparison,
        stored_temperature=getattr(model, "temperature", None),
    )
    print(summary_text(report.record))
    with writing(plan.folder):
        written = write_report(plan.folder, report)
    print(f"wrote {plan.folder / HTML_NAME}, {plan.folder / JSON_NAME} and {len(written) - 2} PNG(s) in {plan.folder}")
    if args.json is not None and resolved(args.json) != resolved(plan.folder / JSON_NAME):
        with writing(args.json):
            atomic_write_text(args.json, report_json(report))
        print(f"wrote {args.json}")
    if plan.temperature_folder is not None:
        _write_temperature(plan, report, record_settings)
    return 0


def _write_temperature(plan: ReportPlan, report, settings: dict[str, Any]) -> None:
    from ..inference.temperature import TEMPERATURE_NAME, write_temperature
    from .outputs import writing

    calibration = report.record["calibration"]
    if calibration is None:
        raise ValueError("--fit-temperature: no pixel was scored, so there is no temperature to fit")
    details = {
        "fitted_on": {**settings, "pixels": calibration["pixels_sampled"], "seed": plan.seed},
        "ece_before": calibration["ece"],
        "ece_after": calibration["ece_scaled"],
        "nll_before": calibration["nll"],
        "nll_after": calibration["nll_scaled"],
    }
    target = plan.temperature_folder / TEMPERATURE_NAME
    with writing(target):
        write_temperature(plan.temperature_folder, calibration["temperature"], details)
    print(
        f"wrote {target} (T = {calibration['temperature']:.4g}): `atrous predict --probabilities` and "
        "Predictor(probabilities=True) now return temperature-scaled probabilities for this model; labels are unchanged"
    )
