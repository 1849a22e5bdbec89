"""The ISBI 2012 pixel error (1 − maximal F-score over thresholds) against scikit-learn and by hand."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import f1_score

from atrous.metrics.isbi import CHALLENGE_THRESHOLDS, isbi_pixel_error


def test_every_threshold_matches_scikit_learn_over_sections_of_different_sizes():
    rng = np.random.default_rng(0)
    pairs = []
    for shape in [(17, 23), (8, 40), (31, 5)]:
        label = np.where(rng.random(shape) < 0.7, 255, 0).astype(np.uint8)
        # Informative but imperfect probabilities, some exactly on a threshold (p > t is strict).
        probability = np.clip(0.35 * (label > 0) + 0.65 * rng.random(shape), 0, 1)
        probability[0, :3] = [0.3, 0.5, 1.0]
        pairs.append((probability.astype(np.float32), label))
    result = isbi_pixel_error(pairs)
    truth = np.concatenate([label.ravel() > 0 for _, label in pairs])
    p = np.concatenate([probability.ravel().astype(np.float64) for probability, _ in pairs])
    f_expected = [f1_score(truth, p > t, zero_division=0.0) for t in CHALLENGE_THRESHOLDS]
    acc_expected = [((p > t) == truth).mean() for t in CHALLENGE_THRESHOLDS]
    np.testing.assert_allclose(result.f_scores, f_expected, atol=1e-12)
    np.testing.assert_allclose(result.accuracies, acc_expected, atol=1e-12)
    best = int(np.argmax(f_expected))
    assert result.best_threshold == CHALLENGE_THRESHOLDS[best]
    assert result.pixel_error == pytest.approx(1 - f_expected[best])


def test_a_case_worked_out_by_hand():
    # label (positive > 0):  1 1 0 0      probability: 0.9 0.4 0.6 0.1
    # t = 0.5: predicted 1 0 1 0 → TP 1, FP 1, FN 1 → F = 2/4 = 0.5, accuracy 2/4
    # t = 0.3: predicted 1 1 1 0 → TP 2, FP 1, FN 0 → F = 4/5 = 0.8, accuracy 3/4 (the best)
    # t = 0.95: nothing predicted → F = 0
    result = isbi_pixel_error([(np.array([0.9, 0.4, 0.6, 0.1]), np.array([255, 1, 0, 0]))], thresholds=[0.5, 0.3, 0.95])
    assert result.f_scores == pytest.approx((0.5, 0.8, 0.0))
    assert result.accuracies == pytest.approx((0.5, 0.75, 0.5))
    assert (result.best_threshold, result.best_f_score) == (0.3, pytest.approx(0.8))
    assert result.pixel_error == pytest.approx(0.2)
    assert result.to_dict()["per_threshold"][1] == {"threshold": 0.3, "f_score": pytest.approx(0.8), "accuracy": 0.75}


def test_the_pixel_error_is_not_one_minus_accuracy():
    # A membrane drawn one pixel too thick on both sides costs accuracy more than the cell F-score.
    label = np.full((1, 100), 255)
    label[0, 45:55] = 0  # a 10 px membrane: 90 cell pixels
    probability = np.ones((1, 100))
    probability[0, 44:56] = 0.0  # 12 px predicted
    result = isbi_pixel_error([(probability, label)], thresholds=[0.5])
    assert result.accuracies[0] == pytest.approx(0.98)
    assert result.f_scores[0] == pytest.approx(2 * 88 / (2 * 88 + 2))  # 0.9888
    assert result.pixel_error == pytest.approx(1 - 176 / 178) and result.pixel_error < 1 - 0.98


@pytest.mark.parametrize(
    ("pairs", "thresholds", "match"),
    [
        ([], CHALLENGE_THRESHOLDS, "at least one"),
        ([(np.zeros((2, 2)), np.zeros((2, 3)))], CHALLENGE_THRESHOLDS, r"pair 0: probability shape \(2, 2\)"),
        ([(np.full((2, 2), 1.5), np.zeros((2, 2)))], CHALLENGE_THRESHOLDS, "within \\[0, 1\\]"),
        ([(np.full((2, 2), np.nan), np.zeros((2, 2)))], CHALLENGE_THRESHOLDS, "finite"),
        ([(np.zeros((2, 2)), np.zeros((2, 2)))], [], "thresholds"),
    ],
)
def test_bad_input_is_named(pairs, thresholds, match):
    with pytest.raises(ValueError, match=match):
        isbi_pixel_error(pairs, thresholds)


def _script():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "scripts" / "isbi_pixel_error.py"
    spec = importlib.util.spec_from_file_location("isbi_pixel_error", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _membranes(root, count=30):
    from PIL import Image

    rng = np.random.default_rng(1)
    (root / "image").mkdir(parents=True)
    (root / "label").mkdir(parents=True)
    for n in range(count):
        Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(root / "image" / f"{n}.png")
        label = np.full((40, 40), 255, np.uint8)
        label[:, 18:22] = 0
        Image.fromarray(label).save(root / "label" / f"{n}.png")
    return root


def test_the_script_scores_held_out_sections_and_never_overwrites(tmp_path, capsys):
    import json

    from tests.helpers import save_tiny_segmenter

    script = _script()
    data = _membranes(tmp_path / "membrane")
    model = save_tiny_segmenter(tmp_path / "model", ["membrane", "cell"], [[0, 0, 0], [255, 255, 255]])
    out = tmp_path / "px.json"
    assert script.main([str(model), "--root", str(data), "--tile", "32", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "5 sections (val)" in printed and printed.count("\n| ") == 12  # header + 11 thresholds
    record = json.loads(out.read_text())
    assert record["split"] == "val" and len(record["per_threshold"]) == 11
    assert record["pixel_error"] == pytest.approx(1 - max(r["f_score"] for r in record["per_threshold"]))

    before = out.read_bytes()
    assert script.main([str(model), "--root", str(data), "--json", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_bytes() == before
    assert script.main([str(model), "--root", str(data), "--tile", "0"]) == 2
    assert "--tile must be a positive" in capsys.readouterr().err
    other = save_tiny_segmenter(tmp_path / "person", ["background", "person"], [[0, 0, 0], [220, 20, 60]])
    assert script.main([str(other), "--root", str(data)]) == 2
    assert "not ISBI membranes" in capsys.readouterr().err
