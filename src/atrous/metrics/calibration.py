"""Calibration of per-pixel probabilities: expected calibration error, reliability bins and
a fitted temperature (Guo et al. 2017, "On Calibration of Modern Neural Networks").

A pixel's *confidence* is its top-label probability, ``max_c softmax(z)_c``, and it is
*correct* when that label is the ground truth. Well calibrated, pixels predicted with
confidence 0.8 are right 80 % of the time.

* **Reliability bins** (§2): confidences fall into ``M = 15`` equal-width bins
  ``B_m = ((m − 1)/M, m/M]`` (a confidence of exactly 0 goes to the first); each bin has
  its count, mean confidence and accuracy (the reliability diagram plots accuracy against
  confidence).
* **Expected calibration error** (§2, eq. 3): ``ECE = Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|``,
  a fraction in [0, 1].
* **Temperature scaling** (§4.2): one scalar ``T > 0`` chosen to minimise the negative
  log-likelihood ``NLL(T) = −mean log softmax(z / T)_y`` of the ground-truth labels. It
  never changes a prediction (the argmax of ``z / T`` is that of ``z``), only the
  confidences. ``NLL`` is convex in ``1/T`` (a log-sum-exp of linear functions minus a
  linear one), so it is unimodal in ``log T``, and a golden-section search on ``log T``
  over ``[log T_min, log T_max]`` finds the minimum (to ``1e-5`` in ``log T``; an
  optimum beyond the bounds returns the nearest bound).

``z`` may be logits or log-probabilities (test-time augmentation averages probabilities):
:mod:`atrous.inference.temperature` applies the fitted ``T`` by the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

ECE_BINS = 15
T_MIN, T_MAX = 0.01, 100.0


@dataclass(frozen=True)
class ReliabilityBins:
    """Equal-width confidence bins: ``edges`` (M + 1,), and per bin the ``count``, the
    ``confidence`` (mean) and the ``accuracy`` (NaN for empty bins)."""

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def ece(self) -> float:
        """``Σ_m |B_m|/n · |acc(B_m) − conf(B_m)|`` over the non-empty bins (NaN for no pixel)."""
        total = self.count.sum()
        if total == 0:
            return math.nan
        kept = self.count > 0
        gaps = np.abs(self.accuracy[kept] - self.confidence[kept])
        return float((self.count[kept] * gaps).sum() / total)

    def as_list(self) -> list[dict[str, float | int | None]]:
        """One JSON-friendly record per bin: ``low``, ``high``, ``count``, ``confidence``, ``accuracy``."""
        return [
            {
                "low": float(self.edges[m]),
                "high": float(self.edges[m + 1]),
                "count": int(self.count[m]),
                "confidence": None if self.count[m] == 0 else float(self.confidence[m]),
                "accuracy": None if self.count[m] == 0 else float(self.accuracy[m]),
            }
            for m in range(len(self.count))
        ]


def reliability_bins(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> ReliabilityBins:
    """Bin top-label ``confidence`` (n,) in [0, 1] with ``correct`` (n,) booleans."""
    confidence = np.asarray(confidence, dtype=np.float64).ravel()
    correct = np.asarray(correct, dtype=bool).ravel()
    if confidence.shape != correct.shape:
        raise ValueError(f"confidence has {confidence.size} values but correct has {correct.size}")
    if bins < 1:
        raise ValueError(f"bins must be >= 1, got {bins}")
    # B_m = ((m-1)/M, m/M]: the bin of c is ceil(c·M) − 1, with c = 0 in the first.
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    count = np.bincount(index, minlength=bins)
    conf_sum = np.bincount(index, weights=confidence, minlength=bins)
    hit_sum = np.bincount(index, weights=correct.astype(np.float64), minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        accuracy = np.where(count > 0, hit_sum / np.maximum(count, 1), np.nan)
    return ReliabilityBins(np.linspace(0.0, 1.0, bins + 1), count, mean_conf, accuracy)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, bins: int = ECE_BINS) -> float:
    """ECE with ``bins`` equal-width bins (Guo et al. 2017, eq. 3)."""
    return reliability_bins(confidence, correct, bins).ece


def top_label(logits: torch.Tensor, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, predicted)`` of (n, C) logits after dividing them by ``temperature``."""
    probs = (torch.as_tensor(logits, dtype=torch.float64) / temperature).softmax(dim=1)
    confidence, predicted = probs.max(dim=1)
    return confidence.numpy(), predicted.numpy()


def negative_log_likelihood(logits: torch.Tensor, labels: torch.Tensor, temperature: float = 1.0) -> float:
    """``−mean log softmax(z / T)_y`` of (n, C) logits and (n,) labels, in float64."""
    z = torch.as_tensor(logits, dtype=torch.float64) / temperature
    y = torch.as_tensor(labels, dtype=torch.int64)
    return float((z.logsumexp(dim=1) - z.gather(1, y[:, None]).squeeze(1)).mean())


def fit_temperature(
    logits: torch.Tensor, labels: torch.Tensor, *, low: float = T_MIN, high: float = T_MAX, tol: float = 1e-5
) -> float:
    """The ``T`` in ``[low, high]`` minimising :func:`negative_log_likelihood` (golden section on ``log T``)."""
    z = torch.as_tensor(logits, dtype=torch.float64)
    y = torch.as_tensor(labels, dtype=torch.int64)
    if z.ndim != 2 or y.shape != z.shape[:1] or z.shape[0] == 0:
        raise ValueError(
            f"fit_temperature: need logits (n, C) and labels (n,), n > 0; got {tuple(z.shape)}, {tuple(y.shape)}"
        )
    picked = z.gather(1, y[:, None]).squeeze(1)

    def nll(log_t: float) -> float:
        scale = math.exp(-log_t)
        return float(((z * scale).logsumexp(dim=1) - picked * scale).mean())

    a, b = math.log(low), math.log(high)
    ratio = (math.sqrt(5) - 1) / 2
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = nll(c), nll(d)
    while b - a > tol:
        if fc <= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = nll(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = nll(d)
    return math.exp((a + b) / 2)
