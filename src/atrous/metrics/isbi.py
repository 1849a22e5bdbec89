"""The ISBI 2012 EM challenge's *pixel error*: 1 − the maximal F-score of pixel similarity.

The U-Net paper reports its result on the challenge as "pixel error 0.0611" (Ronneberger
et al. 2015, Table 1). That number is **not** 1 − pixel accuracy. The challenge scored it
with Fiji's ``trainableSegmentation.metrics.PixelError`` ("Pixel error: defined as 1 − the
maximal F-score of pixel similarity", http://brainiac2.mit.edu/isbi_challenge/evaluation;
Arganda-Carreras et al. 2015, Front. Neuroanat. 9:142):

* a label pixel is positive when its value is > 0 — in these labels (0 = membrane, 255 =
  cell interior) that is the **cell** class, 78 % of the 30 training sections' pixels;
* the proposal (the probability of "cell") is binarised at each threshold ``t``: positive
  when ``p > t``, for ``t`` = 0.0, 0.1, …, 1.0 (the leaderboard's grid);
* true and false positives and false negatives are summed over all sections, and
  ``F = 2·TP / (2·TP + FP + FN)`` (0 when there is no true positive);
* the pixel error is ``1 − max_t F``.

Because the F-score of the majority class forgives a membrane drawn a pixel too thick more
than accuracy does, the same predictions score a lower "pixel error" than ``1 − accuracy``:
0.0611 corresponds to F = 0.939, not to an accuracy of 0.939.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

# t = 0.0, 0.1, …, 1.0, written as i / 10 so that 0.3 is the double nearest 0.3 (Fiji adds
# 0.1 repeatedly, which ends a hair under 1.0; at 1.0 nothing is positive either way).
CHALLENGE_THRESHOLDS: tuple[float, ...] = tuple(i / 10 for i in range(11))


@dataclass(frozen=True)
class PixelErrorResult:
    """``pixel_error = 1 − best_f_score``, reached at ``best_threshold``; one F-score and
    one accuracy per entry of ``thresholds``."""

    pixel_error: float
    best_f_score: float
    best_threshold: float
    thresholds: tuple[float, ...]
    f_scores: tuple[float, ...]
    accuracies: tuple[float, ...]

    def to_dict(self) -> dict[str, object]:
        return {
            "pixel_error": self.pixel_error,
            "best_f_score": self.best_f_score,
            "best_threshold": self.best_threshold,
            "per_threshold": [
                {"threshold": t, "f_score": f, "accuracy": a}
                for t, f, a in zip(self.thresholds, self.f_scores, self.accuracies, strict=True)
            ],
        }


def isbi_pixel_error(
    pairs: Iterable[tuple[np.ndarray, np.ndarray]], thresholds: Sequence[float] = CHALLENGE_THRESHOLDS
) -> PixelErrorResult:
    """The challenge's pixel error over ``(probability, label)`` pairs, one pair a section.

    Args:
        pairs: ``probability`` of the positive class (float, in [0, 1]) and the raw
            ``label`` (positive where > 0), of one shape per pair.
        thresholds: binarisation thresholds; the challenge's 0.0, 0.1, …, 1.0 by default.

    Raises:
        ValueError: no pairs, no thresholds, shapes that differ, or probabilities outside
            [0, 1] or not finite.
    """
    ts = np.asarray(list(thresholds), dtype=np.float64)
    if ts.ndim != 1 or ts.size == 0 or not np.isfinite(ts).all():
        raise ValueError(f"thresholds must be a non-empty list of finite numbers, got {list(thresholds)!r}")
    tp = np.zeros(ts.size, dtype=np.int64)
    fp = np.zeros(ts.size, dtype=np.int64)
    fn = np.zeros(ts.size, dtype=np.int64)
    pixels = 0
    for index, (probability, label) in enumerate(pairs):
        probability, label = np.asarray(probability), np.asarray(label)
        if probability.shape != label.shape:
            raise ValueError(
                f"pair {index}: probability shape {probability.shape} differs from label shape {label.shape}"
            )
        p = probability.astype(np.float64).ravel()
        if not np.isfinite(p).all() or (p < 0).any() or (p > 1).any():
            raise ValueError(f"pair {index}: probabilities must be finite and within [0, 1]")
        positive = label.ravel() > 0
        # Sorting once makes every threshold a binary search: the pixels above t are a suffix.
        order = np.argsort(p, kind="stable")
        p_sorted, positive_sorted = p[order], positive[order]
        # positives_above[k]: labelled positives among the pixels from sorted index k on.
        positives_above = np.concatenate([np.cumsum(positive_sorted[::-1])[::-1], [0]])
        first_above = np.searchsorted(p_sorted, ts, side="right")  # first index with p > t
        predicted = p.size - first_above
        hits = positives_above[first_above]
        tp += hits
        fp += predicted - hits
        fn += int(positive.sum()) - hits
        pixels += p.size
    if pixels == 0:
        raise ValueError("isbi_pixel_error needs at least one non-empty (probability, label) pair")
    denominator = 2 * tp + fp + fn
    f = np.where(tp > 0, 2 * tp / np.maximum(denominator, 1), 0.0)
    accuracy = 1.0 - (fp + fn) / pixels
    best = int(np.argmax(f))  # the first of equal maxima, as Fiji's strict ">" keeps it
    return PixelErrorResult(
        pixel_error=float(1.0 - f[best]),
        best_f_score=float(f[best]),
        best_threshold=float(ts[best]),
        thresholds=tuple(float(t) for t in ts),
        f_scores=tuple(float(x) for x in f),
        accuracies=tuple(float(x) for x in accuracy),
    )
