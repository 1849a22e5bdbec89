"""Bootstrap intervals over images, checked against scikit-learn (per-image matrices and IoU)
and against the resampling written out by hand with numpy."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import confusion_matrix, jaccard_score

from atrous.metrics.bootstrap import (
    bootstrap_iou,
    class_iou,
    image_confusion,
    mean_iou,
    paired_difference,
    resample_indices,
)

VOID = 255
C = 4


def images(seed: int, n: int = 12, noise: float = 0.3):
    """n (target, pred) pairs of 16×16 labels; some pixels void, some classes missing in some images."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(n):
        target = rng.integers(0, C - (i % 2), (16, 16))  # odd images have no class 3
        target[rng.random(target.shape) < 0.05] = VOID
        pred = np.where(rng.random(target.shape) < noise, rng.integers(0, C, target.shape), target)
        pred[target == VOID] = rng.integers(0, C, int((target == VOID).sum()))
        pairs.append((target, pred))
    return pairs


def matrices_of(pairs) -> np.ndarray:
    return np.stack([image_confusion(p, t, C, ignore_index=VOID) for t, p in pairs])


def test_per_image_matrix_and_iou_match_sklearn():
    for target, pred in images(0, n=4):
        kept = target != VOID
        expected = confusion_matrix(target[kept], pred[kept], labels=range(C))
        matrix = image_confusion(pred, target, C, ignore_index=VOID)
        assert matrix.dtype == np.int64 and np.array_equal(matrix, expected)
        present = np.unique(np.concatenate([target[kept], pred[kept]]))
        jaccard = jaccard_score(target[kept], pred[kept], labels=present, average=None)
        assert np.allclose(class_iou(matrix)[present], jaccard)
        assert np.isnan(np.delete(class_iou(matrix), present)).all()


def by_hand(matrices: np.ndarray, resamples: int, seed: int):
    """Efron's bootstrap written out: draw, sum, IoU, mean over defined classes, percentiles."""
    n = len(matrices)
    draws = np.random.default_rng(seed).integers(0, n, size=(resamples, n))
    mious, ious = [], []
    for indices in draws:
        total = np.zeros((C, C))
        for i in indices:
            total += matrices[i]
        tp = np.diag(total)
        union = total.sum(0) + total.sum(1) - tp
        iou = np.array([tp[c] / union[c] if union[c] else np.nan for c in range(C)])
        ious.append(iou)
        mious.append(np.mean(iou[~np.isnan(iou)]))
    return np.percentile(mious, [2.5, 97.5]), np.array(ious)


def test_intervals_equal_the_bootstrap_by_hand():
    matrices = matrices_of(images(1))
    result = bootstrap_iou(matrices, resamples=200, seed=7)
    (low, high), ious = by_hand(matrices, 200, 7)
    assert (result.miou.low, result.miou.high) == pytest.approx((low, high), rel=1e-12)
    for c in range(C):
        kept = ious[:, c][~np.isnan(ious[:, c])]
        assert (result.iou[c].low, result.iou[c].high) == pytest.approx(tuple(np.percentile(kept, [2.5, 97.5])))
    # the point estimate is the dataset-level mIoU of all images, inside its interval
    total = matrices.sum(axis=0)
    assert result.miou.estimate == pytest.approx(float(mean_iou(class_iou(total))))
    assert result.miou.low <= result.miou.estimate <= result.miou.high
    assert all(i.low <= i.estimate <= i.high for i in result.iou)


def test_same_seed_same_intervals_other_seed_other_intervals():
    matrices = matrices_of(images(2))
    a = bootstrap_iou(matrices, resamples=200, seed=0)
    assert a == bootstrap_iou(matrices, resamples=200, seed=0)
    assert a.miou != bootstrap_iou(matrices, resamples=200, seed=1).miou
    assert np.array_equal(resample_indices(12, 5, 3), np.random.default_rng(3).integers(0, 12, size=(5, 12)))


def test_identical_images_give_a_zero_width_interval():
    one = images(3, n=1)[0]
    result = bootstrap_iou(matrices_of([one] * 10), resamples=200, seed=0)
    assert result.miou.low == pytest.approx(result.miou.estimate) == pytest.approx(result.miou.high)


def test_a_class_absent_from_some_resamples_uses_the_others():
    pairs = images(4, n=6)
    matrices = matrices_of(pairs)
    # class 3 only in image 0: many resamples miss it entirely
    matrices[1:, 3, :] = 0
    matrices[1:, :, 3] = 0
    result = bootstrap_iou(matrices, resamples=200, seed=0)
    assert not np.isnan(result.iou[3].low)


def test_paired_difference_equals_the_difference_by_hand():
    pairs = images(5)
    better = matrices_of(pairs)
    worse = matrices_of([(t, np.where(np.random.default_rng(9).random(t.shape) < 0.2, 0, p)) for t, p in pairs])
    result = paired_difference(better, worse, resamples=200, seed=11)
    draws = np.random.default_rng(11).integers(0, len(pairs), size=(200, len(pairs)))
    differences = [float(mean_iou(class_iou(better[d].sum(0))) - mean_iou(class_iou(worse[d].sum(0)))) for d in draws]
    assert (result.miou.low, result.miou.high) == pytest.approx(tuple(np.percentile(differences, [2.5, 97.5])))
    assert result.miou.estimate == pytest.approx(
        float(mean_iou(class_iou(better.sum(0))) - mean_iou(class_iou(worse.sum(0))))
    )
    assert result.miou.low > 0  # the damaged predictions are worse on every resample
    same = paired_difference(better, better, resamples=50, seed=0)
    assert same.miou.low == same.miou.high == same.miou.estimate == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="resamples"):
        bootstrap_iou(matrices_of(images(6, n=2)), resamples=0)
    with pytest.raises(ValueError, match="at least one image"):
        bootstrap_iou(np.zeros((0, C, C), dtype=np.int64))
    with pytest.raises(ValueError, match="same images"):
        paired_difference(np.zeros((2, C, C)), np.zeros((3, C, C)))
