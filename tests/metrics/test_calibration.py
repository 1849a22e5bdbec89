"""Calibration: the bins against scikit-learn's calibration_curve, ECE of calibrated and
miscalibrated synthetic pixels, and temperature scaling recovering a known temperature."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.calibration import calibration_curve

from atrous.metrics.calibration import (
    T_MIN,
    expected_calibration_error,
    fit_temperature,
    negative_log_likelihood,
    reliability_bins,
    top_label,
)


def synthetic(n: int, classes: int, temperature: float, seed: int, spread: float = 3.0):
    """Logits z and labels drawn from softmax(z / temperature): calibrated at ``temperature``."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0.0, spread, (n, classes))
    p = torch.from_numpy(z / temperature).softmax(dim=1).numpy()
    labels = (p.cumsum(axis=1) > rng.random((n, 1))).argmax(axis=1)
    return z, labels


def test_bins_match_sklearn_calibration_curve():
    rng = np.random.default_rng(0)
    confidence = rng.uniform(0.2, 1.0, 5000)
    correct = rng.random(5000) < confidence**2
    bins = reliability_bins(confidence, correct)
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=15, strategy="uniform")
    kept = bins.count > 0
    assert np.allclose(bins.accuracy[kept], accuracy) and np.allclose(bins.confidence[kept], mean_confidence)
    counts, _ = np.histogram(confidence, bins=np.linspace(0, 1, 16))
    assert np.array_equal(bins.count, counts)
    expected = (counts[kept] / counts.sum() * np.abs(accuracy - mean_confidence)).sum()  # Guo et al. eq. 3
    assert bins.ece == pytest.approx(expected, rel=1e-12)
    assert expected_calibration_error(confidence, correct) == pytest.approx(expected, rel=1e-12)


def test_bin_edges_are_right_closed():
    # B_m = ((m-1)/M, m/M]: 1/15 is in the first bin, just above it the second; 0 in the first.
    bins = reliability_bins(np.array([0.0, 1 / 15, 1 / 15 + 1e-9, 1.0]), np.array([True, True, False, True]))
    assert bins.count[:2].tolist() == [2, 1] and bins.count[-1] == 1


def test_perfectly_calibrated_pixels_have_ece_near_zero():
    z, labels = synthetic(60_000, 5, 1.0, seed=1)
    confidence, predicted = top_label(z)
    assert expected_calibration_error(confidence, predicted == labels) < 0.01


def test_overconfident_pixels_have_a_large_ece():
    z, labels = synthetic(20_000, 5, 3.0, seed=2)  # the truth is three times softer than z says
    confidence, predicted = top_label(z)
    assert expected_calibration_error(confidence, predicted == labels) > 0.15


@pytest.mark.parametrize("true_t", [0.5, 2.0])
def test_temperature_scaling_recovers_a_known_temperature(true_t):
    z, labels = synthetic(20_000, 5, true_t, seed=3)
    fitted = fit_temperature(z, labels)
    assert fitted == pytest.approx(true_t, rel=0.05)
    # the fit minimises the NLL: nearby temperatures do worse
    nll = negative_log_likelihood(z, labels, fitted)
    assert nll <= negative_log_likelihood(z, labels, fitted * 1.1)
    assert nll <= negative_log_likelihood(z, labels, fitted / 1.1)
    # and it calibrates: ECE after is small, labels unchanged
    confidence, predicted = top_label(z, fitted)
    assert expected_calibration_error(confidence, predicted == labels) < 0.01
    assert np.array_equal(predicted, z.argmax(axis=1))


def test_nll_by_hand():
    z = np.array([[2.0, 0.0], [0.0, 1.0]])
    labels = np.array([0, 0])
    t = 2.0
    expected = -np.mean([np.log(np.exp(1) / (np.exp(1) + 1)), np.log(1 / (1 + np.exp(0.5)))])
    assert negative_log_likelihood(z, labels, t) == pytest.approx(expected, rel=1e-12)


def test_all_right_with_margin_runs_to_the_lower_bound():
    z = np.array([[5.0, 0.0], [0.0, 5.0]] * 10)
    labels = np.array([0, 1] * 10)
    assert fit_temperature(z, labels) == pytest.approx(T_MIN, rel=1e-3)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="fit_temperature"):
        fit_temperature(np.zeros((0, 3)), np.zeros(0, dtype=np.int64))
    with pytest.raises(ValueError, match="confidence has"):
        reliability_bins(np.zeros(3), np.zeros(2, dtype=bool))
