"""What a dataset's masks say about its classes, and the check training runs before it starts.

A mask is read through the dataset's own steps (``read_raw_mask`` then ``encode_mask``, as
``__getitem__`` and :mod:`atrous.data.doctor` read it): :func:`mask_labels` gives the labels
a mask holds and whether it is a 0/255 binary mask whose 255 stays "ignore". A
:class:`LabelCensus` adds masks up and says what they mean for training: which classes
never appear, and when the task is degenerate (:meth:`LabelCensus.degenerate`).

:func:`check_training_labels` reads an evenly spaced sample of a file dataset's masks
(never the whole of a large dataset: masks only, 64 by default) and stops a run that
could only report a meaningless score — the classic case being 0/255 foreground masks
with ``num_classes=2``, where every foreground pixel is ignored and validation reports
mIoU 1.0 for predicting background everywhere. Other absent classes are warnings. Given
the validation set too, it checks that by the same rules: validation masks that are all
255 (ignore) leave mIoU undefined, so no best model would ever be saved.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .constants import IGNORE_INDEX
from .errors import LabelError

DEFAULT_SAMPLE = 64
BINARY_FIX = "label_map={0: 0, 255: 1}"

__all__ = ["LabelCensus", "LabelError", "MaskLabels", "census", "check_training_labels", "mask_labels"]


def value_counts(array: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values and their counts; ``bincount`` when the values allow it (much faster than sorting)."""
    if array.size and array.dtype.kind in "ui" and array.min() >= 0 and array.max() < 65536:
        counts = np.bincount(array.ravel())
        values = np.flatnonzero(counts)
        return values, counts[values]
    return np.unique(array, return_counts=True)


@dataclass
class MaskLabels:
    """One mask after the dataset's mapping.

    Attributes:
        labels: ``int64 (H, W)`` class indices (and 255 = ignore, and any out-of-range value).
        values: the distinct labels.
        counts: pixels of each of ``values``.
        binary: the file stores exactly the values 0 and 255, and 255 is still "ignore"
            after the mapping — a foreground mask read as background + ignore.
    """

    labels: np.ndarray
    values: np.ndarray
    counts: np.ndarray
    binary: bool


def mask_labels(dataset, raw: np.ndarray, path: Path) -> MaskLabels:
    """Map a mask's stored values (``dataset.read_raw_mask(path)``) to labels and describe them.

    Raises:
        MaskValueError: the dataset cannot map the mask (e.g. a colour mask without a ``color_map``).
    """
    labels = dataset.encode_mask(raw, path)
    values, counts = value_counts(labels)
    binary = False
    if raw.ndim == 2 and IGNORE_INDEX in values:
        binary = set(value_counts(raw)[0].tolist()) == {0, IGNORE_INDEX}
    return MaskLabels(labels, values, counts, binary)


def binary_masks_dominate(binary: int, read: int) -> bool:
    """Whether ``binary`` 0/255 masks out of ``read`` are enough to call the dataset a 0/255 one (half or more)."""
    return binary > 0 and binary * 2 >= max(read, 1)


def binary_fix(dataset, option_prefix: str = "") -> str:
    """What to change for 0/255 masks whose 255 marks the foreground, in the words the caller uses.

    ``option_prefix`` is how the caller spells a dataset argument: ``"data.options."`` in a
    recipe, ``""`` for a Python call or ``atrous doctor -o``.
    """
    if hasattr(dataset, "label_map"):  # the folder dataset
        return f"{option_prefix}{BINARY_FIX}"
    return (
        f"rewrite the masks with 255 → 1, or read them with the folder dataset and {option_prefix}{BINARY_FIX} "
        f"({type(dataset).__name__} has no label_map)"
    )


@dataclass
class LabelCensus:
    """Labels over a set of masks (all of a dataset's, or a sample of them).

    Attributes:
        num_classes: the dataset's classes.
        class_names: one name per class.
        masks_total: masks in the dataset.
        masks_read: masks counted here.
        class_pixels: pixels of each class.
        ignore_pixels: pixels labelled 255.
        binary_masks: masks that are 0/255 binaries with 255 left as ignore (see :class:`MaskLabels`).
        ignore_masks: masks whose every pixel is 255 (ignore) after the mapping.
    """

    num_classes: int
    class_names: list[str]
    masks_total: int
    masks_read: int = 0
    class_pixels: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    ignore_pixels: int = 0
    binary_masks: int = 0
    ignore_masks: int = 0

    def __post_init__(self) -> None:
        if self.class_pixels.size != self.num_classes:
            self.class_pixels = np.zeros(self.num_classes, dtype=np.int64)

    def add(self, mask: MaskLabels) -> None:
        self.masks_read += 1
        self.binary_masks += int(mask.binary)
        self.ignore_masks += int(mask.values.size > 0 and bool((mask.values == IGNORE_INDEX).all()))
        inside = (mask.values >= 0) & (mask.values < self.num_classes)
        self.class_pixels[mask.values[inside]] += mask.counts[inside]
        self.ignore_pixels += int(mask.counts[mask.values == IGNORE_INDEX].sum())

    @property
    def complete(self) -> bool:
        """Whether every mask of the dataset was counted."""
        return self.masks_read >= self.masks_total

    @property
    def present(self) -> list[int]:
        return [c for c in range(self.num_classes) if self.class_pixels[c] > 0]

    @property
    def absent(self) -> list[int]:
        return [c for c in range(self.num_classes) if self.class_pixels[c] == 0]

    def scope(self) -> str:
        """Which masks the census covers, in words: "all 12 masks" or "a sample of 64 of 367 masks"."""
        if self.complete:
            return f"all {self.masks_read} masks" if self.masks_read != 1 else "the only mask"
        return f"a sample of {self.masks_read} of {self.masks_total} masks"

    def names(self, classes: Sequence[int]) -> str:
        return ", ".join(self.class_names[c] for c in classes)

    def degenerate(self, fix: str, *, role: str = "training") -> str | None:
        """Why training on these labels cannot learn the task (or validating on them cannot score it), or ``None``.

        A census can miss a rare class, so only what a sample cannot get wrong counts:

        * 0/255 binary masks (half or more of those read) with fewer than two classes
          present: the 255 pixels *are* visible, as "ignore", and they are the only
          foreground there is. A sample shows this as surely as a full scan.
        * every mask read is all 255 (ignore): no pixel is labelled. A rare class cannot
          explain that; a validation set like it leaves mIoU undefined, so no best model
          is ever saved.
        * fewer than two classes present in *every* mask of the dataset.

        Fewer than two classes in a partial sample may be a rare foreground (defects in a
        few images out of thousands), so it is a warning (:meth:`warnings`), not this.

        Args:
            fix: what to change for 0/255 masks (:func:`binary_fix`).
            role: ``"training"`` or ``"validation"``: what the labels are for, in the message.
        """
        wanted = min(2, self.num_classes)
        present = self.present
        if self.masks_read == 0 or len(present) >= wanted:
            return None
        validation = role == "validation"
        seen = f"only {self.names(present)}" if present else "no class at all, only 255 (ignore)"
        if binary_masks_dominate(self.binary_masks, self.masks_read):
            outcome = (
                f"validation would score {seen}, a meaningless mIoU to choose the best model by"
                if validation
                else f"the model would learn {seen}, with a meaningless validation mIoU"
            )
            return (
                f"in {self.scope()}, {self.binary_masks} hold only the values 0 and 255, and 255 means 'ignore': "
                f"every foreground pixel would be ignored and {outcome}. If 255 marks the foreground, set {fix}"
            )
        if self.ignore_masks == self.masks_read:
            outcome = (
                "validation has nothing to score (mIoU is undefined) and no best model would be saved"
                if validation
                else "there is nothing to learn"
            )
            return (
                f"in {self.scope()}, every pixel is 255 (ignore): {outcome}. Check the masks, num_classes and "
                f"any label_map (atrous doctor shows the label histogram)"
            )
        if self.complete:
            outcome = "validation mIoU would score it alone" if validation else "there is nothing to tell apart"
            return (
                f"the dataset's masks ({self.scope()}) hold {seen} of its {self.num_classes} classes: {outcome}. "
                f"Check num_classes and the mask values (atrous doctor shows the label histogram)"
            )
        return None

    def warnings(self, fix: str, *, role: str = "training") -> list[str]:
        """What deserves a look but need not be wrong (a rare class, a few 0/255 masks).

        Args:
            fix: what to change for 0/255 masks (:func:`binary_fix`).
            role: ``"training"`` or ``"validation"``: what the labels are for, in the message.
        """
        if self.masks_read == 0 or self.degenerate(fix, role=role) is not None:
            return []
        tips = []
        absent = self.absent
        if absent:
            one = len(absent) == 1
            what = f"class{'' if one else 'es'} {self.names(absent)} never appear{'s' if one else ''}"
            it = "it" if one else "them"
            if role == "validation":
                # Absent from validation, a class has no IoU: mIoU averages the others.
                never = f"validation never scores {it}"
                if self.complete:
                    tips.append(f"{what} in {self.scope()}: {never}, and mIoU leaves {it} out")
                else:
                    tips.append(
                        f"{what} in {self.scope()}: fine if rare, but if missing {never} "
                        "(atrous doctor scans every mask)"
                    )
            elif self.complete:
                tips.append(f"{what} in {self.scope()}: the model cannot learn {it}")
            else:
                tips.append(
                    f"{what} in {self.scope()}: fine if rare, but if missing the model never learns {it} "
                    "(atrous doctor scans every mask)"
                )
        if binary_masks_dominate(self.binary_masks, self.masks_read):
            tips.append(
                f"{self.binary_masks} of {self.masks_read} masks read hold only 0 and 255, and 255 means 'ignore': "
                f"if 255 marks the foreground, set {fix}"
            )
        return tips


def sample_indices(total: int, size: int) -> list[int]:
    """Up to ``size`` indices spread evenly over ``range(total)``, first and last included."""
    if total <= size:
        return list(range(total))
    return sorted({round(float(i)) for i in np.linspace(0, total - 1, size)})


def census(dataset, *, sample: int | None = DEFAULT_SAMPLE) -> LabelCensus | None:
    """Count the labels of ``sample`` evenly spaced masks of a file dataset (all with ``None``).

    Only masks are read. Returns ``None`` for datasets that read no files (synthetic
    shapes: every class is drawn by construction).

    Raises:
        DatasetError: a mask that cannot be read or holds labels outside the classes — the
            error the data loader would raise for it, sooner.
    """
    if not hasattr(dataset, "samples") or not hasattr(dataset, "encode_mask"):
        return None
    total = len(dataset.samples)
    result = LabelCensus(dataset.num_classes, list(dataset.class_names), total)
    check = getattr(dataset, "check_labels", None)
    for index in sample_indices(total, total if sample is None else sample):
        path = dataset.samples[index][1]
        raw = dataset.read_raw_mask(path)
        mask = mask_labels(dataset, raw, path)
        if check is not None:
            check(mask.labels, raw, path)
        result.add(mask)
    return result


def check_training_labels(
    dataset,
    *,
    val_set=None,
    sample: int = DEFAULT_SAMPLE,
    option_prefix: str = "data.options.",
    quiet: bool = False,
) -> LabelCensus | None:
    """Read a sample of the training masks; stop on degenerate labels, warn about absent classes.

    With ``val_set``, a sample of the validation masks is read next and judged by the same
    rules (:meth:`LabelCensus.degenerate` with ``role="validation"``): all-ignore or
    0/255 validation masks would give an undefined or meaningless mIoU, and with it no
    best model, which only ``atrous eval`` would reveal, after training.

    Args:
        dataset: the training set (datasets that read no files are not checked).
        val_set: the validation set, or ``None``. Not read again when it holds the same
            files as ``dataset`` (``data.val_split`` equal to ``data.train_split``).
        sample: masks to read, evenly spaced over each dataset.
        option_prefix: how the fix's dataset argument is spelled (``"data.options."`` for a recipe).
        quiet: print no warnings (DDP ranks other than 0); degenerate labels still raise.

    Returns:
        The training set's census (``None`` when it reads no files).

    Raises:
        LabelError: the labels leave fewer than two classes to learn, or none to score
            (see :meth:`LabelCensus.degenerate`); the message says what to change.
        DatasetError: a sampled mask that cannot be read or holds out-of-range labels.
    """
    found = _check(dataset, "training", sample=sample, option_prefix=option_prefix, quiet=quiet)
    if val_set is not None and val_set is not dataset and not _same_files(dataset, val_set):
        _check(val_set, "validation", sample=sample, option_prefix=option_prefix, quiet=quiet)
    return found


def _same_files(a, b) -> bool:
    # The same split twice: build_eval_dataset gives it the training split's options, so its
    # labels are the ones just checked, and a second read would only repeat the warnings.
    samples_a, samples_b = getattr(a, "samples", None), getattr(b, "samples", None)
    return type(a) is type(b) and samples_a is not None and samples_a == samples_b


def _check(dataset, role: str, *, sample: int, option_prefix: str, quiet: bool) -> LabelCensus | None:
    found = census(dataset, sample=sample)
    if found is None:
        return None
    fix = binary_fix(dataset, option_prefix)
    reason = found.degenerate(fix, role=role)
    if reason is not None:
        raise LabelError(f"{role} labels of {dataset!r}: {reason}")
    if not quiet:
        for message in found.warnings(fix, role=role):
            print(f"warning: {role} labels: {message}", file=sys.stderr, flush=True)
    return found
