"""The model card (Mitchell et al. 2019, "Model Cards for Model Reporting") that
:func:`~atrous.models.pretrained.save_pretrained` writes as ``README.md`` beside the weights.

It is rendered from what the folder's ``config.json`` holds: the build arguments, and the
metadata the trainer saves with every ``best/`` model — ``metadata["card"]`` records the
recipe and its command, the data, the training (steps, time, hardware, precision) and the
evaluation at the saved step (with 95 % bootstrap intervals when the evaluation computed
them). A model saved by hand without that record gets a card with what is known and says
that the rest was not recorded.

The card is only ever written over a card atrous wrote (its first line is
:data:`CARD_MARKER`): a ``README.md`` of the user's own in the folder is left alone.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

CARD_NAME = "README.md"
CARD_MARKER = "<!-- atrous model card: written by save_pretrained, rewritten with the model -->"
# Classes scoring below this IoU are listed among the known limits.
WEAK_IOU = 0.5


def render_model_card(config: Mapping[str, Any], *, parameters: int | None = None) -> str:
    """The card of a saved model, as Markdown, from its ``config.json`` content."""
    metadata = dict(config.get("metadata") or {})
    card = dict(metadata.get("card") or {})
    name = str(config.get("name", "model"))
    dataset = metadata.get("dataset")
    lines = [CARD_MARKER, f"# {name}" + (f" on {dataset}" if dataset else ""), ""]
    lines += _model_table(config, metadata, parameters)
    lines += _use_section()
    lines += _training_section(card)
    lines += _evaluation_section(card.get("evaluation"), metadata.get("class_names"))
    lines += _limits_section(card, metadata)
    return "\n".join(lines).rstrip() + "\n"


def _model_table(config: Mapping[str, Any], metadata: Mapping[str, Any], parameters: int | None) -> list[str]:
    build = {k: v for k, v in config.items() if k not in ("name", "format", "version", "metadata")}
    names = list(metadata.get("class_names") or [])
    rows = [("model", f"`{config.get('name')}`"), ("task", str(metadata.get("task", "semantic")))]
    if names:
        rows.append(("classes", f"{len(names)}: " + ", ".join(names)))
    elif "num_classes" in build:
        rows.append(("classes", str(build["num_classes"])))
    if build.get("output_stride"):
        rows.append(("output stride", str(build["output_stride"])))
    if metadata.get("mean") and metadata.get("std"):
        mean, std = _numbers(metadata["mean"]), _numbers(metadata["std"])
        rows.append(("input", f"RGB, (x/255 − mean)/std with mean {mean}, std {std}"))
    if metadata.get("base_size"):
        side = int(metadata["base_size"])
        rows.append(("input size", f"shorter side {side} px (resized; results at the image's size)"))
    if parameters is not None:
        rows.append(("parameters", f"{parameters / 1e6:.2f} M"))
    options = ", ".join(f"{k}={v}" for k, v in build.items() if k not in ("num_classes", "output_stride"))
    if options:
        rows.append(("build options", f"`{options}`"))
    return ["| | |", "|---|---|", *[f"| {k} | {v} |" for k, v in rows], ""]


def _use_section() -> list[str]:
    return [
        "## Use",
        "",
        "```",
        "atrous predict THIS_FOLDER photo.jpg -o out/",
        "atrous eval THIS_FOLDER -c RECIPE.yaml",
        "```",
        "",
        "In Python: `atrous.models.load_model(THIS_FOLDER)`, or `atrous.inference.Predictor` on it.",
        "",
    ]


def _training_section(card: Mapping[str, Any]) -> list[str]:
    lines = ["## Training", ""]
    if not card:
        return [*lines, "Not recorded: this model was saved outside `atrous train`.", ""]
    if card.get("command"):
        lines.append(f"- command: `{card['command']}`")
    if card.get("recipe"):
        lines.append(f"- recipe: `{card['recipe']}` (the full config is the run's `config.yaml`)")
    data = card.get("data") or {}
    if data:
        lines.append(
            f"- data: `{data.get('dataset')}` split `{data.get('train_split')}` ({data.get('train_images')} images), "
            f"validated on `{data.get('val_split')}` ({data.get('val_images')} images)"
        )
    training = card.get("training") or {}
    if training:
        lines.append(
            f"- trained {training.get('step')} of {training.get('steps')} steps in {_duration(training.get('seconds'))}"
            f" on {training.get('hardware')} ({training.get('processes', 1)} process(es)), precision "
            f"{training.get('precision')}, torch {training.get('torch')}, atrous {training.get('atrous')}"
        )
        fit = training.get("schedule_fit") or {}
        if (
            _finite(fit.get("steps_per_s")) < math.inf
            and _finite(fit.get("max_time_s")) < math.inf
            and fit.get("steps") != fit.get("planned_steps")
        ):
            lines.append(
                f"- schedule fitted to the {fit.get('max_time_s'):g} s budget (`train.fit_to_budget`): "
                f"{fit.get('steps')} steps instead of {fit.get('planned_steps')}, at the "
                f"{fit.get('steps_per_s'):.2f} steps/s measured on this hardware"
            )
        if training.get("pretrained"):
            lines.append(f"- started from: `{training['pretrained']}`")
        else:
            lines.append("- started from random weights (no pretrained backbone)")
        if training.get("ema"):
            lines.append(f"- weights: the exponential moving average of training's (decay {training['ema']})")
    return [*lines, ""]


def _evaluation_section(evaluation: Mapping[str, Any] | None, class_names: Sequence[str] | None) -> list[str]:
    lines = ["## Evaluation", ""]
    if not evaluation:
        return [*lines, "Not recorded.", ""]
    metrics = dict(evaluation.get("metrics") or {})
    intervals = dict(evaluation.get("intervals") or {})
    lines.append(
        f"On `{evaluation.get('split')}` at step {evaluation.get('step')}, {evaluation.get('setting', 'single scale')}."
    )
    lines.append("")
    if "miou" not in metrics:  # an instance model: its AP figures
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {k} | {_score(v)} |" for k, v in metrics.items() if isinstance(v, int | float)]
        return [*lines, ""]
    with_ci = bool(intervals)
    header = "| | IoU | 95 % interval |" if with_ci else "| | IoU |"
    lines += [header, "|---|---|---|" if with_ci else "|---|---|"]
    per_class = metrics.get("per_class") or {}
    for name in class_names or list(per_class):
        iou = (per_class.get(name) or {}).get("iou")
        row = f"| {name} | {_score(iou)}{' (absent from this split)' if iou is None else ''} |"
        if with_ci:
            row += f" {_interval((intervals.get('per_class') or {}).get(name))} |"
        lines.append(row)
    miou_row = f"| **mIoU** | **{_score(metrics.get('miou'))}** |"
    if with_ci:
        miou_row += f" {_interval(intervals.get('miou'))} |"
    lines.append(miou_row)
    lines.append("")
    lines.append(
        f"Pixel accuracy {_score(metrics.get('pixel_accuracy'))}, mean class accuracy "
        f"{_score(metrics.get('mean_accuracy'))}; mIoU from one dataset-level confusion matrix."
    )
    if with_ci:
        lines.append(
            f"Intervals: percentile bootstrap over images ({intervals.get('resamples')} resamples, "
            f"seed {intervals.get('seed')})."
        )
    return [*lines, ""]


def _limits_section(card: Mapping[str, Any], metadata: Mapping[str, Any]) -> list[str]:
    lines = ["## Known limits", ""]
    data = card.get("data") or {}
    training = card.get("training") or {}
    if data:
        source = "from random weights" if not training.get("pretrained") else "from the weights named above"
        lines.append(
            f"- Trained {source} on {data.get('train_images')} images of `{data.get('dataset')}`: expect it to "
            "work on pictures like those, and to fail on other scenes, cameras or classes."
        )
    evaluation = card.get("evaluation") or {}
    per_class = (evaluation.get("metrics") or {}).get("per_class") or {}
    weak = [f"{n} ({_score(v.get('iou'))})" for n, v in per_class.items() if _finite(v.get("iou")) < WEAK_IOU]
    if weak:
        lines.append(f"- Classes below {WEAK_IOU} IoU on the validation split: {', '.join(weak)}.")
    absent = [n for n, v in per_class.items() if v.get("iou") is None]
    if absent:
        lines.append(f"- Not measured (absent from the validation split): {', '.join(absent)}.")
    evaluations = evaluation.get("evaluations")
    if isinstance(evaluations, int) and evaluations > 1:
        split = evaluation.get("split")
        lines.append(
            f"- Chosen as the best of up to {evaluations} evaluations on `{split}`: the figures above picked this "
            f"step, so they overstate what to expect on new images; score it on images the run never saw."
        )
    if evaluation.get("images") is not None and evaluation["images"] < 100:
        lines.append(f"- The evaluation saw {evaluation['images']} images: read the intervals, not only the means.")
    if len(lines) == 2:
        lines.append("- Not recorded: this model was saved outside `atrous train`.")
    return [*lines, ""]


def _finite(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else math.inf


def _score(value: Any) -> str:
    return f"{value:.3f}" if isinstance(value, int | float) and math.isfinite(value) else "—"


def _interval(pair: Any) -> str:
    if not pair or any(v is None for v in pair):
        return "—"
    return f"[{pair[0]:.3f}, {pair[1]:.3f}]"


def _numbers(values: Sequence[float]) -> str:
    return "(" + ", ".join(f"{float(v):.3f}" for v in values) + ")"


def _duration(seconds: Any) -> str:
    if not isinstance(seconds, int | float):
        return "an unrecorded time"
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} min" if hours else f"{minutes} min {secs} s"
