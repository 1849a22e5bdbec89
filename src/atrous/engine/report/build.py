"""From what one pass collected to the report's numbers (``report.json``) and pictures.

Every figure is computed from :class:`~.collect.Collected`; nothing here runs the model.
The definitions live with the metrics (:mod:`atrous.metrics.boundary`, ``calibration``,
``bootstrap``, ``objects``) and in ``docs/evaluation.md``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ...metrics import SegmentationMetrics
from ...metrics.bootstrap import RESAMPLES, IoUIntervals, bootstrap_iou, class_iou, mean_iou, paired_difference
from ...metrics.boundary import DILATION_RATIO, boundary_iou
from ...metrics.calibration import (
    ECE_BINS,
    T_MAX,
    T_MIN,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    top_label,
)
from ...metrics.objects import SIZES, ObjectSizes
from .collect import Collected
from .errors import confused_pairs, error_panel
from .figures import png_bytes, reliability_diagram


@dataclass(frozen=True)
class Comparison:
    """Another setting (or model) evaluated on the same images: its per-image matrices."""

    label: str  # as the user wrote it: "flip", "os=8", a model folder
    matrices: np.ndarray  # (N, C, C)
    settings: dict[str, Any]


@dataclass
class Report:
    """``record`` is ``report.json``; ``figures`` maps file names to PNG bytes."""

    record: dict[str, Any]
    figures: dict[str, bytes] = field(default_factory=dict)

    @property
    def temperature(self) -> float | None:
        calibration = self.record.get("calibration")
        return None if calibration is None else calibration["temperature"]


def build_report(
    collected: Collected,
    metrics: SegmentationMetrics,
    total_matrix: np.ndarray,
    class_names: Sequence[str],
    palette: Sequence[Sequence[int]],
    *,
    settings: dict[str, Any],
    image_names: Sequence[str] | None = None,
    resamples: int = RESAMPLES,
    seed: int = 0,
    comparison: Comparison | None = None,
    stored_temperature: float | None = None,
    ignore_index: int = 255,
) -> Report:
    """The report of one evaluation.

    Args:
        collected: the pass's per-image figures.
        metrics, total_matrix: the evaluation's own metrics and (C, C) confusion matrix; the
            per-image matrices must add up to it (checked: they count the same labels).
        settings: how the evaluation ran (model, split, scales …), copied into the record.
        image_names: a name per image (file names), else ``#index``.
        resamples, seed: the bootstrap's.
        comparison: another setting on the same images, for a paired difference.
        stored_temperature: the model's ``temperature.json``, if any (its ECE is reported too).
    """
    names = list(class_names)
    matrices = collected.matrices
    if not np.array_equal(matrices.sum(axis=0), np.asarray(total_matrix)):
        raise RuntimeError("the per-image confusion matrices do not add up to the evaluation's: a bug in the report")
    record: dict[str, Any] = {**settings, "images": int(matrices.shape[0]), **metrics.as_dict(names)}
    report = Report(record)
    intervals = bootstrap_iou(matrices, resamples=resamples, seed=seed)
    record["bootstrap"] = _intervals_record(intervals, names)
    record["boundary"] = _boundary(collected, names)
    record["trimap"] = _trimap(collected, np.asarray(total_matrix))
    record["calibration"] = _calibration(collected, report, stored_temperature)
    sizes = ObjectSizes(len(names))
    sizes.add(collected.objects)
    record["objects"] = {
        "connectivity": 8,
        "area_px": {name: [low, high] for name, low, high in SIZES},
        **sizes.summary(names),
    }
    record["confused_pairs"] = confused_pairs(np.asarray(total_matrix), names)
    record["worst_images"] = _worst(collected, names, palette, image_names, report, ignore_index)
    record["compare"] = None if comparison is None else _compare(matrices, comparison, names, resamples, seed)
    return report


def _json(x: float) -> float | None:
    return None if x is None or math.isnan(x) else float(x)


def _intervals_record(intervals: IoUIntervals, names: list[str]) -> dict[str, Any]:
    return {
        "resamples": intervals.resamples,
        "seed": intervals.seed,
        "level": intervals.level,
        "miou": intervals.miou.as_dict(),
        "per_class": {name: interval.as_dict() for name, interval in zip(names, intervals.iou, strict=True)},
    }


def _boundary(collected: Collected, names: list[str]) -> dict[str, Any]:
    iou = boundary_iou(collected.boundary_intersection.sum(axis=0), collected.boundary_union.sum(axis=0))
    defined = iou[~np.isnan(iou)]
    distances = collected.boundary_distances
    return {
        "dilation_ratio": DILATION_RATIO,
        "distance_px": {"min": int(distances.min()), "max": int(distances.max())} if distances.size else None,
        "miou": float(defined.mean()) if defined.size else None,
        "per_class": {name: _json(v) for name, v in zip(names, iou, strict=True)},
    }


def _trimap(collected: Collected, total_matrix: np.ndarray) -> dict[str, Any]:
    """Accuracy in the band of each width, and what the band says about the errors: the share
    of all wrong pixels that lie in it, and the accuracy of the pixels outside it. Most errors
    in a thin band with high accuracy outside means outlines drawn a pixel or two apart, not
    missed regions (docs/evaluation.md)."""
    total = int(total_matrix.sum())  # scored pixels: the confusion matrix counts no void
    wrong = total - int(np.trace(total_matrix))
    record: dict[str, Any] = {"widths": list(collected.trimap_widths)}
    for key in ("accuracy", "pixels", "error_share", "accuracy_outside"):
        record[key] = {}
    for d, hits, scored in zip(
        collected.trimap_widths,
        collected.trimap_correct.sum(axis=0).tolist(),
        collected.trimap_scored.sum(axis=0).tolist(),
        strict=True,
    ):
        inside_wrong, outside = scored - hits, total - scored
        record["accuracy"][str(d)] = hits / scored if scored else None
        record["pixels"][str(d)] = int(scored)
        record["error_share"][str(d)] = inside_wrong / wrong if wrong else None
        record["accuracy_outside"][str(d)] = (outside - (wrong - inside_wrong)) / outside if outside else None
    return record


def _calibration(collected: Collected, report: Report, stored: float | None) -> dict[str, Any] | None:
    z, y = collected.sample_scores, collected.sample_labels
    if y.size == 0:
        return None
    confidence, predicted = top_label(z)
    correct = predicted == y
    before = reliability_bins(confidence, correct)
    temperature = fit_temperature(z, y)
    after = reliability_bins(top_label(z, temperature)[0], correct)
    report.figures["reliability.png"] = reliability_diagram(before, after, temperature)
    record = {
        "bins": ECE_BINS,
        "scores": "log of averaged probabilities" if collected.probabilities else "logits",
        "pixels_scored": int(collected.pixels_scored),
        "pixels_sampled": int(y.size),
        "ece": before.ece,
        "nll": negative_log_likelihood(z, y),
        "temperature": temperature,
        # At a bound the optimum lies beyond it: T_MAX when the confidences carry almost no
        # information about correctness, T_MIN when every sampled pixel is right.
        "temperature_at_bound": bool(
            math.isclose(temperature, T_MIN, rel_tol=1e-3) or math.isclose(temperature, T_MAX, rel_tol=1e-3)
        ),
        "ece_scaled": after.ece,
        "nll_scaled": negative_log_likelihood(z, y, temperature),
        "reliability": before.as_list(),
        "reliability_scaled": after.as_list(),
        "stored_temperature": stored,
        "ece_stored": None,
        "figure": "reliability.png",
    }
    if stored is not None:
        record["ece_stored"] = reliability_bins(top_label(z, stored)[0], correct).ece
    return record


def _worst(
    collected: Collected,
    names: list[str],
    palette: Sequence[Sequence[int]],
    image_names: Sequence[str] | None,
    report: Report,
    ignore_index: int,
) -> list[dict[str, Any]]:
    out = []
    for rank, bad in enumerate(collected.worst, start=1):
        file = f"worst_{rank:02d}.png"
        report.figures[file] = png_bytes(
            error_panel(bad.image, bad.target, bad.pred, palette, ignore_index=ignore_index)
        )
        truth = collected.matrices[bad.index].sum(axis=1)
        out.append(
            {
                "rank": rank,
                "index": bad.index,
                "name": image_names[bad.index] if image_names is not None else f"#{bad.index}",
                "miou": bad.miou,
                "classes": [names[c] for c in np.flatnonzero(truth)],
                "file": file,
            }
        )
    return out


def _compare(
    matrices: np.ndarray, comparison: Comparison, names: list[str], resamples: int, seed: int
) -> dict[str, Any]:
    other = comparison.matrices
    if other.shape != matrices.shape or not np.array_equal(other.sum(axis=2), matrices.sum(axis=2)):
        raise ValueError(
            f"--compare {comparison.label}: the other evaluation scored other ground truth "
            "(another number of images, or other masks); a paired comparison needs the same images"
        )
    this_iou, other_iou = class_iou(matrices.sum(axis=0)), class_iou(other.sum(axis=0))
    difference = paired_difference(matrices, other, resamples=resamples, seed=seed)
    return {
        "against": comparison.label,
        "settings": comparison.settings,
        "resamples": resamples,
        "seed": seed,
        "miou": {
            "this": _json(float(mean_iou(this_iou))),
            "other": _json(float(mean_iou(other_iou))),
            "difference": difference.miou.as_dict(),
        },
        "per_class": {
            name: {"this": _json(a), "other": _json(b), "difference": d.as_dict()}
            for name, a, b, d in zip(names, this_iou, other_iou, difference.iou, strict=True)
        },
    }
