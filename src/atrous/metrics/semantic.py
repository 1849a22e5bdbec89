"""Semantic-segmentation metrics from one dataset-level confusion matrix.

Every number comes from a single confusion matrix ``n`` accumulated over the whole
evaluation set — ``n[i, j]`` is the number of pixels of ground-truth class ``i``
predicted as class ``j`` — never from an average of per-image scores (which weighs a
small image as much as a large one and is undefined for classes absent from an image).

With ``t_i = Σ_j n[i, j]`` the ground-truth pixels of class ``i``, Long et al. 2015
("Fully Convolutional Networks for Semantic Segmentation", §5) define:

* pixel accuracy ``Σ_i n_ii / Σ_i t_i``;
* mean accuracy ``(1/n_cl) Σ_i n_ii / t_i``;
* mean IU ``(1/n_cl) Σ_i n_ii / (t_i + Σ_j n_ji − n_ii)``;
* frequency-weighted IU ``(Σ_k t_k)^-1 Σ_i t_i n_ii / (t_i + Σ_j n_ji − n_ii)``.

Added here: per-class Dice ``2 n_ii / (t_i + Σ_j n_ji)`` (the F1 score) and its mean.

Absent classes: a class with no pixel in either ground truth or prediction has NaN IoU
and Dice; a class with no ground-truth pixel has NaN accuracy. NaN classes are left out
of the means (``n_cl`` counts only the others), as in the PASCAL VOC and Cityscapes
evaluations. A class absent from the ground truth but predicted somewhere has IoU and
Dice 0 and *is* counted. Pixels labelled ``ignore_index`` never enter the matrix.

A mean over fewer classes than the dataset has is a different number, so it never goes
out unmarked: :func:`absent_note` says over how many classes mIoU was taken and which
classes had no ground truth, and :func:`format_table`, :meth:`SegmentationMetrics.as_dict`
(``absent_classes``, ``miou_classes``, ``note``) and :func:`best_miou_text` carry it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..data.constants import IGNORE_INDEX


@dataclass(frozen=True)
class SegmentationMetrics:
    """The scores of one confusion matrix, all fractions in [0, 1] (or NaN).

    Attributes:
        pixel_accuracy: correctly labelled pixels over all counted pixels.
        mean_accuracy: mean of ``accuracy`` over classes present in the ground truth.
        accuracy: per-class accuracy (recall), ``n_ii / t_i``.
        iou: per-class intersection over union, ``n_ii / (t_i + Σ_j n_ji − n_ii)``.
        miou: mean of ``iou`` over classes present in ground truth or prediction.
        fwiou: ``iou`` weighted by each class's share of ground-truth pixels.
        dice: per-class Dice (F1), ``2 n_ii / (t_i + Σ_j n_ji)``.
        mean_dice: mean of ``dice`` over classes present in ground truth or prediction.
    """

    pixel_accuracy: float
    mean_accuracy: float
    accuracy: list[float]
    iou: list[float]
    miou: float
    fwiou: float
    dice: list[float]
    mean_dice: float

    @property
    def num_classes(self) -> int:
        return len(self.iou)

    @property
    def absent_classes(self) -> list[int]:
        """Classes with no ground-truth pixel (their accuracy is NaN)."""
        return [c for c, acc in enumerate(self.accuracy) if math.isnan(acc)]

    @property
    def miou_classes(self) -> int:
        """How many classes :attr:`miou` (and :attr:`mean_dice`) average over."""
        return sum(not math.isnan(iou) for iou in self.iou)

    def as_dict(self, class_names: Sequence[str] | None = None) -> dict[str, Any]:
        """JSON-friendly values: NaN becomes ``None``, per-class scores are keyed by name.

        Args:
            class_names: one name per class; the class index (as a string) when omitted.

        Returns:
            ``{"pixel_accuracy", "mean_accuracy", "miou", "fwiou", "mean_dice"}``,
            ``"miou_classes"`` (how many classes ``miou`` averages), ``"absent_classes"``
            (names of the classes with no ground-truth pixel), ``"note"`` (:func:`absent_note`,
            ``None`` when every class is present) and ``"per_class": {name: {"iou", "accuracy", "dice"}}``.
        """
        names = _class_names(class_names, self.num_classes)
        return {
            "pixel_accuracy": _json_float(self.pixel_accuracy),
            "mean_accuracy": _json_float(self.mean_accuracy),
            "miou": _json_float(self.miou),
            "fwiou": _json_float(self.fwiou),
            "mean_dice": _json_float(self.mean_dice),
            "miou_classes": self.miou_classes,
            "absent_classes": [names[c] for c in self.absent_classes],
            "note": absent_note(self, names),
            "per_class": {
                name: {"iou": _json_float(iou), "accuracy": _json_float(acc), "dice": _json_float(dice)}
                for name, iou, acc, dice in zip(names, self.iou, self.accuracy, self.dice, strict=True)
            },
        }


class ConfusionMatrix:
    """A dataset-level confusion matrix for semantic segmentation.

    Rows are ground truth, columns prediction; counts are int64. Call :meth:`update`
    once per batch, :meth:`all_reduce` once after the last batch when evaluating under
    ``torchrun``, then :meth:`compute`.

    The counts are replaced, never modified in place, so a matrix filled under
    ``torch.inference_mode()`` can be updated, reset or reduced outside it (in-place
    updates to inference tensors are not allowed there); :attr:`matrix` is therefore a
    snapshot, not a live view.

    Args:
        num_classes: number of classes ``C``; labels are ``0..C-1``.
        ignore_index: the target label whose pixels are not counted.
        device: where the matrix lives. By default it moves to the device of the first
            batch, so accumulation happens where the predictions are.

    Example::

        cm = ConfusionMatrix(num_classes=21)
        for images, masks in loader:
            cm.update(model(images), masks)
        cm.all_reduce()
        print(format_table(cm.compute(), class_names))
    """

    def __init__(self, num_classes: int, *, ignore_index: int = IGNORE_INDEX, device=None) -> None:
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an integer, got {ignore_index!r}")
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self._device_fixed = device is not None
        self._matrix = torch.zeros(
            num_classes, num_classes, dtype=torch.int64, device=device if device is not None else "cpu"
        )

    def __repr__(self) -> str:
        return (
            f"ConfusionMatrix(num_classes={self.num_classes}, ignore_index={self.ignore_index}, "
            f"device={self.device}, pixels={int(self._matrix.sum())})"
        )

    @property
    def matrix(self) -> torch.Tensor:
        """The (C, C) int64 counts, rows = ground truth, columns = prediction."""
        return self._matrix

    @property
    def device(self) -> torch.device:
        return self._matrix.device

    def reset(self) -> None:
        """Zero the counts (the matrix stays on its device)."""
        self._matrix = torch.zeros_like(self._matrix)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add one batch.

        Args:
            pred: integer labels shaped like ``target``, or float logits (B, C, H, W),
                of which the argmax over dim 1 is taken.
            target: integer labels (B, H, W) or (H, W); ``ignore_index`` pixels are skipped.

        Raises:
            ValueError: shapes disagree, or a label is outside ``0..C-1`` (and is not
                ``ignore_index`` in ``target``).
        """
        labels = self._labels(pred, target)
        if not self._device_fixed:
            self._matrix = self._matrix.to(target.device)
            self._device_fixed = True
        num_classes = self.num_classes
        target = target.long()
        labels = labels.long()
        valid = target != self.ignore_index
        in_range = (target >= 0) & (target < num_classes) & (labels >= 0) & (labels < num_classes)
        # Every pixel gets a bin, so nothing is selected by a boolean mask (a device sync):
        # ``t·C + p`` for counted pixels, C² for ignored ones, C² + 1 for bad labels.
        # bincount already reads the largest index back to size its output, so a bad
        # label shows as a longer output, with no extra sync on the success path.
        cells = num_classes**2
        index = torch.where(valid, torch.where(in_range, target * num_classes + labels, cells + 1), cells)
        counts = torch.bincount(index.flatten(), minlength=cells + 1)
        if counts.numel() > cells + 1:
            self._raise_bad_labels(labels, target, valid)
        self._matrix = self._matrix + counts[:cells].view(num_classes, num_classes).to(self._matrix.device)

    def merge(self, other: ConfusionMatrix) -> ConfusionMatrix:
        """Add another matrix's counts to this one (e.g. from another worker); returns self."""
        if not isinstance(other, ConfusionMatrix):
            raise TypeError(f"merge: other must be a ConfusionMatrix, got {type(other).__name__}")
        if other.num_classes != self.num_classes:
            raise ValueError(f"merge: other has {other.num_classes} classes, this matrix has {self.num_classes}")
        self._matrix = self._matrix + other.matrix.to(self._matrix.device)
        return self

    def all_reduce(self) -> ConfusionMatrix:
        """Sum the counts over all ranks in place; returns self.

        A no-op unless ``torch.distributed`` is available and initialised. Call it once,
        after the last :meth:`update` (a second call would add the sums again). The
        matrix must be on a device the process group supports (CPU for gloo, CUDA for
        NCCL — the default placement follows the data, which is what NCCL needs).
        """
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            matrix = self._matrix.clone()
            torch.distributed.all_reduce(matrix, op=torch.distributed.ReduceOp.SUM)
            self._matrix = matrix
        return self

    def compute(self) -> SegmentationMetrics:
        """Scores of the counts so far; see the module docstring for the definitions."""
        n = self._matrix.detach().to("cpu", torch.float64)
        tp = n.diagonal()
        gt = n.sum(dim=1)  # t_i: ground-truth pixels of each class
        predicted = n.sum(dim=0)
        total = gt.sum()
        nan = torch.tensor(math.nan, dtype=torch.float64)
        accuracy = torch.where(gt > 0, tp / gt, nan)
        union = gt + predicted - tp
        iou = torch.where(union > 0, tp / union, nan)
        dice = torch.where(gt + predicted > 0, 2 * tp / (gt + predicted), nan)
        # A class absent from the ground truth weighs nothing; sum only the others so that
        # its NaN IoU (absent from the prediction too) cannot poison the sum.
        present = gt > 0
        fwiou = (gt[present] * iou[present]).sum() / total if total > 0 else nan
        return SegmentationMetrics(
            pixel_accuracy=float(tp.sum() / total) if total > 0 else math.nan,
            mean_accuracy=_nanmean(accuracy),
            accuracy=accuracy.tolist(),
            iou=iou.tolist(),
            miou=_nanmean(iou),
            fwiou=float(fwiou),
            dice=dice.tolist(),
            mean_dice=_nanmean(dice),
        )

    def _labels(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Check ``pred`` and ``target``; return ``pred`` as labels shaped like ``target``."""
        if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
            raise TypeError(
                f"update: pred and target must be tensors, got {type(pred).__name__} and {type(target).__name__}"
            )
        if target.ndim not in (2, 3) or target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
            raise ValueError(
                f"update: target must be integer labels (B, H, W) or (H, W), "
                f"got shape {tuple(target.shape)} and dtype {target.dtype}"
            )
        if pred.device != target.device:
            raise ValueError(f"update: pred is on {pred.device} but target is on {target.device}")
        if pred.is_floating_point():
            if pred.ndim != 4 or target.ndim != 3 or pred.shape[1] != self.num_classes:
                raise ValueError(
                    f"update: float pred must be logits (B, {self.num_classes}, H, W) for a target (B, H, W), "
                    f"got pred shape {tuple(pred.shape)} and target shape {tuple(target.shape)}"
                )
            if pred.shape[0] != target.shape[0] or pred.shape[2:] != target.shape[1:]:
                raise ValueError(
                    f"update: logits shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)} "
                    f"(expected (B, C, H, W) with target (B, H, W))"
                )
            return pred.argmax(dim=1)
        if pred.is_complex() or pred.dtype == torch.bool:
            raise ValueError(f"update: pred must be integer labels or float logits, got dtype {pred.dtype}")
        if pred.shape != target.shape:
            raise ValueError(
                f"update: pred labels shape {tuple(pred.shape)} does not match target shape {tuple(target.shape)}"
            )
        return pred

    def _raise_bad_labels(self, labels: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> None:
        bad_target = target[valid & ((target < 0) | (target >= self.num_classes))]
        if bad_target.numel():
            raise ValueError(
                f"update: target has labels {_some_values(bad_target)}; expected 0..{self.num_classes - 1} "
                f"or ignore_index={self.ignore_index}"
            )
        bad_pred = labels[valid & ((labels < 0) | (labels >= self.num_classes))]
        raise ValueError(f"update: pred has labels {_some_values(bad_pred)}; expected 0..{self.num_classes - 1}")


def format_table(metrics: SegmentationMetrics, class_names: Sequence[str] | None = None) -> str:
    """A plain-text table of per-class IoU, accuracy and Dice (in %), then the summary.

    Classes whose score is undefined (absent, see the module docstring) show ``-``; when a
    class has no ground truth, a last line says what the means were taken over (:func:`absent_note`).
    """
    names = _class_names(class_names, metrics.num_classes)
    width = max(len("class"), len("mean"), *(len(n) for n in names))
    lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}  {'Dice':>6}"]
    lines.append("-" * len(lines[0]))
    for name, iou, acc, dice in zip(names, metrics.iou, metrics.accuracy, metrics.dice, strict=True):
        lines.append(f"{name:<{width}}  {_pct(iou)}  {_pct(acc)}  {_pct(dice)}")
    lines.append("-" * len(lines[0]))
    lines.append(f"{'mean':<{width}}  {_pct(metrics.miou)}  {_pct(metrics.mean_accuracy)}  {_pct(metrics.mean_dice)}")
    lines.append(
        f"pixel accuracy {_pct(metrics.pixel_accuracy).strip()}  ·  mIoU {_pct(metrics.miou).strip()}  ·  "
        f"FWIoU {_pct(metrics.fwiou).strip()}"
    )
    note = absent_note(metrics, names)
    if note:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def absent_note(metrics: SegmentationMetrics, class_names: Sequence[str] | None = None) -> str | None:
    """What the means were taken over when some class has no ground-truth pixel, or ``None``.

    E.g. ``"mIoU over 9 of 11 classes (absent from ground truth and never predicted, so left
    out: sign, pole); mean Dice over the same 9, mean accuracy over the 9 in ground truth"``.
    """
    names = _class_names(class_names, metrics.num_classes)
    absent = metrics.absent_classes
    total = metrics.num_classes
    if not absent:
        return None
    if len(absent) == total:
        return "no ground-truth pixel was counted (every pixel ignored, or no image): every score is undefined"
    left_out = [c for c in absent if math.isnan(metrics.iou[c])]
    counted = [c for c in absent if not math.isnan(metrics.iou[c])]

    def listed(classes: list[int]) -> str:
        return ", ".join(names[c] for c in classes)

    if not counted:
        why = f"absent from ground truth and never predicted, so left out: {listed(left_out)}"
    elif not left_out:
        why = f"absent from ground truth but predicted, so counted with IoU 0: {listed(counted)}"
    else:
        why = (
            f"absent from ground truth: {listed(absent)}; never predicted, so left out: {listed(left_out)}; "
            f"predicted, so counted with IoU 0: {listed(counted)}"
        )
    n = metrics.miou_classes
    return (
        f"mIoU over {n} of {total} classes ({why}); mean Dice over the same {n}, "
        f"mean accuracy over the {total - len(absent)} in ground truth"
    )


def best_miou_text(best_miou: float, history: Sequence[Mapping[str, Any]] = ()) -> str:
    """The best validation mIoU for a summary line, with the note of the evaluation that gave it.

    Args:
        best_miou: the best mIoU (``-inf`` or NaN when no evaluation counted a pixel).
        history: the run's records; the ``"val"`` record with this mIoU supplies the note
            (a resumed run may not hold it: then the number goes alone).
    """
    if not math.isfinite(best_miou):
        return "undefined (no validation pixel was counted: every pixel ignored, or no validation ran)"
    text = f"{best_miou:.4f}"
    for record in history:
        miou = record.get("miou")
        if record.get("kind", "val") == "val" and miou is not None and math.isclose(miou, best_miou, abs_tol=1e-12):
            note = record.get("note")
            return f"{text}; {note}" if note else text
    return text


def _nanmean(x: torch.Tensor) -> float:
    # NaN (not a warning) when every entry is NaN.
    kept = x[~x.isnan()]
    return float(kept.mean()) if kept.numel() else math.nan


def _json_float(x: float) -> float | None:
    return None if math.isnan(x) else float(x)


def _pct(x: float) -> str:
    return f"{'-':>6}" if math.isnan(x) else f"{100 * x:6.2f}"


def _class_names(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    if class_names is None:
        return [str(i) for i in range(num_classes)]
    names = [str(n) for n in class_names]
    if len(names) != num_classes:
        raise ValueError(f"class_names has {len(names)} names for {num_classes} classes")
    if len(set(names)) != len(names):
        duplicates = sorted({n for n in names if names.count(n) > 1})
        raise ValueError(f"class_names must be unique; repeated: {duplicates}")
    return names


def _some_values(x: torch.Tensor, limit: int = 10) -> str:
    values = x.unique().tolist()
    shown = ", ".join(str(v) for v in values[:limit])
    return "{" + shown + (f", ... ({len(values)} distinct)" if len(values) > limit else "") + "}"
