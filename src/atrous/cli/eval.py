"""``atrous eval``: dataset-level metrics, single scale or multi-scale + flip; with ``--report DIR``
an evaluation that explains itself (:mod:`atrous.cli.eval_report`, docs/evaluation.md)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .common import (
    add_config_options,
    add_precision_option,
    add_tta_options,
    crf_record,
    resolve_base_size,
    resolve_crf_option,
    resolve_flip,
    resolve_scales,
    resolve_tile,
    run_config_path,
)
from .eval_report import add_report_options, check_report_options, load_compared_model, run_report

HELP = "evaluate a trained model on a dataset split"


def add_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, help="a run folder, a saved model folder, or a checkpoint")
    add_config_options(parser)
    add_tta_options(parser)
    parser.add_argument("--split", help="dataset split (default: the config's val split)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    add_precision_option(parser)
    parser.add_argument(
        "--json",
        type=Path,
        help="also write the metrics to this JSON file (checked before the evaluation; the table is printed first)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace the --json file if it already exists, write into a non-empty --report folder, replace the "
        "model's temperature.json with --fit-temperature (never another model file)",
    )
    add_report_options(parser)


def run(args: argparse.Namespace) -> int:
    import torch
    from torch.utils.data import DataLoader

    from ..config import load_config
    from ..data.constants import IMAGENET_MEAN, IMAGENET_STD
    from ..engine.evaluator import evaluate
    from ..engine.tasks.semantic import build_eval_dataset
    from ..inference import inference_path, load_inference_model
    from ..metrics import format_table
    from ..models import task_of
    from ..runtime import resolve_device

    config_path = run_config_path(args.model, args.config, "say which dataset to evaluate on")
    config = load_config(config_path, args.overrides)
    plan = check_report_options(args, config_path, config)  # None without --report
    if args.json is not None:
        _check_json(args, config_path, config)
    scales = resolve_scales(args, list(config.eval.scales))
    flip = resolve_flip(args, config.eval.flip)  # --no-flip overrides the recipe's eval.flip
    output_stride = args.output_stride or config.eval.output_stride
    tile = resolve_tile(args, config.eval.tile)  # --tile 0 overrides the recipe's eval.tile
    crf = resolve_crf_option(args)

    device = resolve_device(args.device)
    model = load_inference_model(args.model, args.precision).to(device)
    if task_of(model) == "instance":
        if plan is not None:
            raise ValueError("--report applies to semantic models; this is an instance model (Mask R-CNN)")
        return _run_instance(args, config, model, device)
    if output_stride:
        model.set_output_stride(output_stride)
    base_size = resolve_base_size(args.base_size, model, tile)
    compared_model = None
    if plan is not None and plan.compare is not None:  # a --compare that is no model fails now, not after a pass
        compared_model = load_compared_model(plan.compare, args.precision, model, device)
    path = inference_path(model.eval(), device, args.precision)
    data = config.data
    dataset = build_eval_dataset(config, args.split)
    if dataset.num_classes != model.num_classes:
        raise ValueError(f"the model predicts {model.num_classes} classes but the dataset has {dataset.num_classes}")
    _warn_if_classes_differ(model, dataset)
    loader = DataLoader(dataset, batch_size=data.val_batch_size, num_workers=data.workers)
    collector = None
    if plan is not None:
        from ..engine.report import ReportCollector
        from ..inference.tta import returns_probabilities

        # Logits with one scale and no flip (and for the unpadded U-Net's overlap-tile), else
        # averaged probabilities: the calibration sample keeps log-probabilities then.
        collector = ReportCollector(
            model.num_classes,
            # the CRF returns marginals
            probabilities=returns_probabilities(scales, flip, base_size) or crf is not None,
            worst=plan.worst,
            seed=plan.seed,
        )
    with torch.inference_mode():
        matrix = evaluate(
            path,  # the inference path `atrous predict` builds for this --precision
            loader,
            model.num_classes,
            device=device,
            scales=scales,
            flip=flip,
            progress=True,
            tile=tile,
            tile_overlap=config.eval.tile_overlap,
            base_size=base_size,
            on_batch=collector,
            crf=crf,
            mean=IMAGENET_MEAN,  # the normalisation build_eval_dataset applies: the CRF recovers the pictures
            std=IMAGENET_STD,
        )
    metrics = matrix.compute()
    names = list(getattr(dataset, "class_names", [str(i) for i in range(model.num_classes)]))
    print(
        f"model {args.model}  split {args.split or data.val_split}  scales {scales}  flip {flip}  "
        f"output stride {model.output_stride}"
        + (f"  tiles {tile}" if tile else "")
        + (f"  base size {base_size}" if base_size else "")
        + (f"  crf {crf_record(crf)['preset'] or 'custom'} ({crf.iterations} iterations)" if crf else "")
    )
    print(f"precision {path.precision}: {path.choice.summary()}")
    print(format_table(metrics, names))
    if plan is not None:
        settings = {
            "model": str(args.model),
            "config": str(config_path),
            "split": args.split or data.val_split,
            "scales": scales,
            "flip": flip,
            "output_stride": model.output_stride,
            "tile": tile,
            "base_size": base_size,
            "precision": path.precision,
            # what the compared run needs to resolve its own path (left out of the record)
            "precision_flag": args.precision,
            "output_stride_flag": output_stride,
            "base_size_flag": args.base_size,
            "tile_overlap": config.eval.tile_overlap,
            "crf": crf_record(crf),
            "crf_flag": crf,
        }
        context = {
            "model": model,
            "compared_model": compared_model,
            "device": device,
            "loader": loader,
            "settings": settings,
            "collector": collector,
            "metrics": metrics,
            "matrix": matrix.matrix,
            "names": names,
            "palette": _palette(model, dataset),
            "image_names": _image_names(dataset),
        }
        return run_report(args, plan, context)
    if args.json:
        record = {
            "scales": scales,
            "flip": flip,
            "output_stride": model.output_stride,
            "tile": tile,
            "base_size": base_size,
            "crf": crf_record(crf),
            "precision": path.precision,
            **metrics.as_dict(names),
        }
        _write_json(args.json, record)
    return 0


def _palette(model, dataset) -> list:
    from ..data.palette import default_palette

    palette = getattr(dataset, "palette", None) or (getattr(model, "metadata", None) or {}).get("palette")
    return [tuple(c) for c in palette] if palette else default_palette(model.num_classes)


def _image_names(dataset) -> list[str] | None:
    """File names of the split's images, in evaluation order, when the dataset has files."""
    samples = getattr(dataset, "samples", None)
    if not samples:
        return None
    try:
        return [Path(sample[0]).name for sample in samples]
    except (TypeError, IndexError):
        return None


def _check_json(args: argparse.Namespace, config_path: Path, config) -> None:
    """Before the (long) evaluation: --json can be written, and is not an input (the model's
    files, the config, the dataset's files) nor, without --overwrite, an existing file."""
    from .outputs import Reads, add_model_files, check_folder, check_outputs, clear_stale

    reads = Reads()
    reads.add(config_path, "config")
    add_model_files(reads, args.model)
    if config.data.root:
        reads.add_tree(config.data.root, "dataset")
    check_folder(args.json.parent, "--json folder")
    check_outputs([args.json], reads, overwrite=args.overwrite)
    clear_stale([args.json.parent], "eval")


def _write_json(path: Path, record: dict) -> None:
    from ..utils.atomic import atomic_write_text
    from .outputs import writing

    with writing(path):  # after the table is printed: a failure here loses no figure
        atomic_write_text(path, json.dumps(record, indent=2) + "\n")


def _run_instance(args: argparse.Namespace, config, model, device) -> int:
    """Box and mask AP (COCO definitions, pycocotools) of an instance model."""
    from ..engine.tasks.instance import build_instance_datasets, evaluate_instances, instance_val_loader
    from ..metrics.instance import summarize

    if args.precision not in ("auto", "fp32"):
        raise ValueError(f"--precision {args.precision} applies to semantic models; instance models evaluate in fp32")
    if args.scales or args.ms or args.flip or args.output_stride or args.tile or args.crf or args.base_size:
        raise ValueError(
            "--scales, --flip, --output-stride, --tile, --base-size and --crf apply to semantic models, "
            "not instance ones"
        )
    if args.split:
        config.data.val_split = args.split
    _, dataset = build_instance_datasets(config, train=False)
    if dataset.num_classes != model.num_classes:
        raise ValueError(
            f"the model predicts {model.num_classes} classes but the dataset has {dataset.num_classes} "
            "(background included)"
        )
    metrics = evaluate_instances(
        model, instance_val_loader(dataset, config), model.num_classes, device=device, progress=True
    )
    print(f"model {args.model}  split {config.data.val_split}  images {len(dataset)}")
    print(summarize(metrics))
    if args.json:
        _write_json(args.json, metrics)
    return 0


def _warn_if_classes_differ(model, dataset) -> None:
    """Same number of classes, other names: per-class figures would be labelled with the
    dataset's names while the model means its own. Said, not refused: a class renamed on
    purpose is legitimate."""
    import sys

    trained = list((getattr(model, "metadata", None) or {}).get("class_names") or [])
    named = list(getattr(dataset, "class_names", None) or [])
    if not trained or len(trained) != len(named) or trained == named:
        return
    first = next(i for i, (a, b) in enumerate(zip(trained, named, strict=True)) if a != b)
    order = " (the same names in another order)" if sorted(trained) == sorted(named) else ""
    print(
        f"atrous eval: warning: the model was trained with other class names{order}: class {first} is "
        f"{trained[first]!r} for the model and {named[first]!r} for the dataset; the table uses the dataset's",
        file=sys.stderr,
    )
