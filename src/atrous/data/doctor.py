"""Check a file dataset before training on it: what is there, what is wrong, what to change.

:func:`scan_dataset` reads every image and mask of a :class:`~atrous.data.datasets.base.FileDataset`
through the dataset's own steps (``read_raw_mask`` then ``encode_mask``) but never stops at a
bad sample: unreadable files, size mismatches, labels out of range and colour masks are
collected into a :class:`DoctorReport`, with suggestions (a ``label_map`` for 0/255 masks,
``resize_masks``, class weights). :func:`format_report` renders it as text. No model runs.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .constants import IGNORE_INDEX
from .errors import DatasetError, MaskValueError
from .io import read_image, read_image_size
from .label_check import LabelCensus, binary_fix, binary_masks_dominate, mask_labels
from .labels import count_colors, format_values, invalid_labels

_MAX_LISTED = 5


@dataclass
class SizeMismatch:
    """An image and its mask of different sizes; sizes are ``(H, W)``."""

    image: Path
    mask: Path
    image_size: tuple[int, int]
    mask_size: tuple[int, int]


@dataclass
class DoctorReport:
    """What :func:`scan_dataset` found. Sizes are ``(H, W)``; pixel counts are after the dataset's label mapping.

    Attributes:
        dataset: the dataset's ``repr``.
        num_samples: pairs in the dataset.
        num_read: pairs whose mask was read and mapped to labels.
        image_sizes: image size → number of images.
        label_histogram: label (class index, or 255 = ignore, or an out-of-range value) → pixels.
        out_of_range: stored mask value that maps to no class → the mask files holding it.
        size_mismatches: images whose mask has another size.
        binary_masks: masks holding only 0 and 255, with 255 left as "ignore".
        color_masks: three-channel colour masks the dataset cannot map to classes.
        mask_colors: colour → pixels, over ``color_masks`` (to write a ``color_map``).
        unreadable: messages of files that could not be read or mapped.
        unmatched: files the dataset left out for lack of a partner.
        class_weights: median-frequency-balancing weights, see :func:`median_frequency_weights`.
        label_problem: why the labels leave nothing to learn (0/255 masks whose foreground is
            all "ignore", or one class in every mask), as training's label check would stop
            with it; see :meth:`atrous.data.label_check.LabelCensus.degenerate`.
        suggestions: what to change, in words.
    """

    dataset: str
    num_samples: int
    num_classes: int
    class_names: list[str]
    resize_masks: bool = False
    num_read: int = 0
    image_sizes: Counter = field(default_factory=Counter)
    label_histogram: dict[int, int] = field(default_factory=dict)
    out_of_range: dict[int, list[Path]] = field(default_factory=dict)
    size_mismatches: list[SizeMismatch] = field(default_factory=list)
    binary_masks: list[Path] = field(default_factory=list)
    color_masks: list[Path] = field(default_factory=list)
    mask_colors: dict[tuple[int, int, int], int] = field(default_factory=dict)
    unreadable: list[str] = field(default_factory=list)
    unmatched: list[Path] = field(default_factory=list)
    class_weights: list[float] = field(default_factory=list)
    label_problem: str | None = None
    suggestions: list[str] = field(default_factory=list)

    @property
    def min_size(self) -> tuple[int, int] | None:
        """Smallest height and smallest width over all images (not necessarily of one image)."""
        if not self.image_sizes:
            return None
        return min(h for h, _ in self.image_sizes), min(w for _, w in self.image_sizes)

    @property
    def max_size(self) -> tuple[int, int] | None:
        """Largest height and largest width over all images."""
        if not self.image_sizes:
            return None
        return max(h for h, _ in self.image_sizes), max(w for _, w in self.image_sizes)

    @property
    def most_common_size(self) -> tuple[int, int] | None:
        return self.image_sizes.most_common(1)[0][0] if self.image_sizes else None

    @property
    def loads(self) -> bool:
        """Whether every sample can be loaded as it is."""
        mismatches = self.size_mismatches and not self.resize_masks
        return not (self.out_of_range or mismatches or self.color_masks or self.unreadable)

    @property
    def ok(self) -> bool:
        """Whether training can use the dataset as it is: every sample loads and the labels
        leave something to learn. What is not ok is listed under "Problems" by
        :func:`format_report` (``atrous doctor`` then exits with status 3); suggestions are not problems."""
        return self.loads and self.label_problem is None


def median_frequency_weights(class_pixels: Sequence[int], image_pixels: Sequence[int]) -> list[float]:
    """Class weights by median frequency balancing (Eigen & Fergus, ICCV 2015, §4.2).

    ``weight_c = median(freq) / freq_c`` with ``freq_c = class_pixels[c] / image_pixels[c]``:
    the pixels of class ``c`` over all pixels of the images in which ``c`` is present. The
    median is over the classes present; a class never seen gets weight 0.

    Args:
        class_pixels: pixels of each class.
        image_pixels: for each class, the total pixels of the images where it appears.
    """
    freq = np.array(
        [c / p if c > 0 and p > 0 else np.nan for c, p in zip(class_pixels, image_pixels, strict=True)],
        dtype=np.float64,
    )
    present = ~np.isnan(freq)
    if not present.any():
        return [0.0] * len(freq)
    median = float(np.median(freq[present]))
    return [float(median / f) if ok else 0.0 for f, ok in zip(freq, present, strict=True)]


def scan_dataset(dataset, *, check_images: bool = True, limit: int | None = None) -> DoctorReport:
    """Read every sample of a file dataset and report what is in it and what is wrong.

    Args:
        dataset: a dataset with ``samples`` (``(image_path, mask_path)`` pairs),
            ``read_raw_mask``, ``encode_mask``, ``num_classes`` and ``class_names``, such as
            every dataset of :mod:`atrous.data.datasets` that reads files.
        check_images: decode every image (finds truncated files); ``False`` reads only the
            headers, for sizes.
        limit: scan only the first ``limit`` samples.

    Returns:
        The report; bad samples are listed in it, never raised.
    """
    if not hasattr(dataset, "samples") or not hasattr(dataset, "encode_mask"):
        raise TypeError(
            f"scan_dataset reads file datasets (with .samples and .encode_mask); got {type(dataset).__name__}"
        )
    num_classes = dataset.num_classes
    report = DoctorReport(
        dataset=repr(dataset),
        num_samples=len(dataset.samples),
        num_classes=num_classes,
        class_names=list(dataset.class_names),
        resize_masks=bool(getattr(dataset, "resize_masks", False)),
        unmatched=list(getattr(dataset, "unmatched", [])),
    )
    histogram: Counter = Counter()
    out_of_range: defaultdict[int, list[Path]] = defaultdict(list)
    colors: Counter = Counter()
    samples = dataset.samples[:limit]
    labels = LabelCensus(num_classes, report.class_names, report.num_samples)  # as training's label check counts
    image_pixels = np.zeros(num_classes, dtype=np.int64)  # pixels of the images where each class is present
    for image_path, mask_path in samples:
        image_size = None
        try:
            image_size = tuple(read_image(image_path).shape[1:]) if check_images else read_image_size(image_path)
            report.image_sizes[image_size] += 1
        except DatasetError as exc:
            report.unreadable.append(str(exc))
        try:
            raw = dataset.read_raw_mask(mask_path)
        except DatasetError as exc:
            report.unreadable.append(str(exc))
            continue
        if image_size is not None and raw.shape[:2] != image_size:
            report.size_mismatches.append(SizeMismatch(Path(image_path), Path(mask_path), image_size, raw.shape[:2]))
        try:
            read = mask_labels(dataset, raw, mask_path)
        except MaskValueError as exc:
            if raw.ndim == 3:
                report.color_masks.append(Path(mask_path))
                colors.update(count_colors(raw))
            else:
                report.unreadable.append(str(exc))
            continue
        report.num_read += 1
        labels.add(read)
        mask, values, counts = read.labels, read.values, read.counts
        histogram.update(dict(zip(values.tolist(), counts.tolist(), strict=True)))
        if read.binary:
            report.binary_masks.append(Path(mask_path))
        bad = invalid_labels(mask, num_classes)
        if bad.any():
            stored = raw[bad] if raw.shape == mask.shape else mask[bad]
            for value in np.unique(stored).tolist():
                out_of_range[int(value)].append(Path(mask_path))
        present = (values >= 0) & (values < num_classes)
        image_pixels[values[present]] += mask.size
    report.label_histogram = dict(sorted(histogram.items()))
    report.out_of_range = dict(sorted(out_of_range.items()))
    report.mask_colors = dict(colors.most_common())
    report.class_weights = median_frequency_weights(labels.class_pixels.tolist(), image_pixels.tolist())
    report.label_problem = labels.degenerate(binary_fix(dataset))
    report.suggestions = _suggestions(report, labels.class_pixels)
    return report


def _names(paths: Sequence[Path]) -> str:
    shown = ", ".join(str(p) for p in paths[:_MAX_LISTED])
    return shown + (f", … and {len(paths) - _MAX_LISTED} more" if len(paths) > _MAX_LISTED else "")


def _suggestions(report: DoctorReport, class_pixels: np.ndarray) -> list[str]:
    tips = []
    n = report.num_classes
    if binary_masks_dominate(len(report.binary_masks), report.num_read) and not report.label_problem:
        tips.append(
            f"{len(report.binary_masks)} of {report.num_read} masks hold only 0 and 255, and 255 means 'ignore': "
            "if 255 marks the foreground, pass label_map={0: 0, 255: 1} with num_classes=2"
        )
    if report.color_masks:
        top = ", ".join(f"{c}: {p} px" for c, p in list(report.mask_colors.items())[:8])
        tips.append(
            f"{len(report.color_masks)} masks are RGB colour images; pass color_map={{(r, g, b): class_index, ...}} "
            f"(most frequent colours: {top})"
        )
    if report.out_of_range:
        values = list(report.out_of_range)
        below_ignore = [v for v in values if 0 <= v < IGNORE_INDEX]
        hint = f"num_classes={max(below_ignore) + 1} if they are classes, or " if below_ignore else ""
        tips.append(
            f"labels {format_values(values)} are neither classes 0..{n - 1} nor {IGNORE_INDEX} (ignore): "
            f"use {hint}a label_map to remap them"
        )
    if report.size_mismatches and not report.resize_masks:
        tips.append(
            f"{len(report.size_mismatches)} masks differ in size from their images: fix the files, or pass "
            "resize_masks=True (FolderDataset) to resize each mask to its image by nearest neighbour"
        )
    if report.unmatched:
        tips.append(f"{len(report.unmatched)} files have no partner and were left out: {_names(report.unmatched)}")
    if report.num_read:
        absent = [report.class_names[c] for c in range(n) if class_pixels[c] == 0]
        if absent:
            tips.append(f"classes never present: {', '.join(absent)}")
        weights = [w for w in report.class_weights if w > 0]
        if weights and max(weights) / min(weights) > 10:
            tips.append("classes are strongly imbalanced: consider the class weights above in the loss")
    return tips


def _size_text(size: tuple[int, int] | None) -> str:
    return "-" if size is None else f"{size[1]}×{size[0]}"


def format_report(report: DoctorReport) -> str:
    """The report as text for a terminal: counts, sizes (``W×H``), label histogram, problems, suggestions."""
    problems = len(report.unreadable) + len(report.color_masks)
    lines = [
        f"Dataset: {report.dataset}",
        f"Samples: {report.num_samples} ({report.num_read} masks read, {problems} with read problems)",
    ]
    if report.image_sizes:
        common = report.most_common_size
        lines.append(
            f"Image sizes (W×H): most common {_size_text(common)} ({report.image_sizes[common]} images), "
            f"min {_size_text(report.min_size)}, max {_size_text(report.max_size)}, "
            f"{len(report.image_sizes)} distinct"
        )
    total = sum(report.label_histogram.values())
    if total:
        lines.append("Labels (pixels, after the dataset's mapping):")
        for value, pixels in report.label_histogram.items():
            if 0 <= value < report.num_classes:
                name = report.class_names[value]
            else:
                name = "ignore" if value == IGNORE_INDEX else "OUT OF RANGE"
            lines.append(f"  {value:>5}  {name:<24} {100 * pixels / total:6.2f} %  {pixels:>14,}")
        weights = ", ".join(f"{w:.3g}" for w in report.class_weights)
        lines.append(f"Suggested class weights (median frequency balancing): [{weights}]")
    issues = []
    for value, paths in report.out_of_range.items():
        issues.append(f"label {value} in {len(paths)} masks: {_names(paths)}")
    if report.label_problem:
        issues.append(report.label_problem)
    mismatches = [
        f"size mismatch: image {m.image} is {_size_text(m.image_size)}, mask {m.mask} is {_size_text(m.mask_size)}"
        for m in report.size_mismatches[:_MAX_LISTED]
    ]
    if len(report.size_mismatches) > _MAX_LISTED:
        mismatches.append(f"… and {len(report.size_mismatches) - _MAX_LISTED} more size mismatches")
    # With resize_masks the dataset resizes each mask to its image: worth knowing, not a problem.
    notes = [f"{line} (resized: resize_masks=True)" for line in mismatches] if report.resize_masks else []
    if not report.resize_masks:
        issues += mismatches
    if report.color_masks:
        issues.append(f"colour masks: {_names(report.color_masks)}")
    issues += [f"unreadable: {message}" for message in report.unreadable[:_MAX_LISTED]]
    if len(report.unreadable) > _MAX_LISTED:
        issues.append(f"… and {len(report.unreadable) - _MAX_LISTED} more unreadable files")
    lines.append("Problems:" if issues else "Problems: none")
    lines += [f"  - {issue}" for issue in issues]
    if notes:
        lines.append("Notes:")
        lines += [f"  - {note}" for note in notes]
    if report.suggestions:
        lines.append("Suggestions:")
        lines += [f"  - {tip}" for tip in report.suggestions]
    return "\n".join(lines)
