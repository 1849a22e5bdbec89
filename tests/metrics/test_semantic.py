import dataclasses
import json
import math
import os
import socket
import warnings
from datetime import timedelta

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    confusion_matrix,
    f1_score,
    jaccard_score,
    recall_score,
)

from atrous.data.constants import IGNORE_INDEX
from atrous.metrics import ConfusionMatrix, SegmentationMetrics, absent_note, best_miou_text, format_table

C = 6


def random_batch(shape=(3, 17, 19), num_classes=C, absent=(), seed=0, ignore_frac=0.2):
    """Random (pred, target) with ~ignore_frac ignored pixels and ``absent`` classes in neither."""
    g = torch.Generator().manual_seed(seed)
    allowed = torch.tensor([c for c in range(num_classes) if c not in absent])
    target = allowed[torch.randint(len(allowed), shape, generator=g)]
    # Predictions agree with the target half the time, so scores are far from 0 and 1.
    pred = torch.where(
        torch.rand(shape, generator=g) < 0.5, target, allowed[torch.randint(len(allowed), shape, generator=g)]
    )
    target = torch.where(torch.rand(shape, generator=g) < ignore_frac, IGNORE_INDEX, target)
    return pred, target


def sklearn_inputs(pred, target):
    keep = target != IGNORE_INDEX
    return target[keep].numpy(), pred[keep].numpy()


def assert_same(ours, theirs):
    np.testing.assert_allclose(
        np.asarray(ours, dtype=float), np.asarray(theirs, dtype=float), rtol=1e-12, equal_nan=True
    )


def test_matches_sklearn_on_data_with_ignored_pixels_and_an_absent_class():
    pred, target = random_batch(absent=(4,))
    assert (target == IGNORE_INDEX).any()
    cm = ConfusionMatrix(C)
    cm.update(pred, target)
    m = cm.compute()
    y_true, y_pred = sklearn_inputs(pred, target)
    labels = list(range(C))

    assert cm.matrix.dtype == torch.int64
    np.testing.assert_array_equal(cm.matrix.numpy(), confusion_matrix(y_true, y_pred, labels=labels))

    # sklearn's jaccard_score has no zero_division=nan: mark classes in neither as NaN.
    iou = jaccard_score(y_true, y_pred, labels=labels, average=None, zero_division=0)
    iou[~np.isin(labels, np.union1d(y_true, y_pred))] = np.nan
    assert math.isnan(iou[4]) and math.isnan(m.iou[4])
    assert_same(m.iou, iou)
    assert m.miou == pytest.approx(np.nanmean(iou), rel=1e-12)

    assert m.pixel_accuracy == pytest.approx(accuracy_score(y_true, y_pred), rel=1e-12)
    assert_same(m.accuracy, recall_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan))
    assert m.mean_accuracy == pytest.approx(balanced_accuracy_score(y_true, y_pred), rel=1e-12)

    dice = f1_score(y_true, y_pred, labels=labels, average=None, zero_division=np.nan)
    assert_same(m.dice, dice)
    assert m.mean_dice == pytest.approx(np.nanmean(dice), rel=1e-12)

    freq = np.bincount(y_true, minlength=C) / y_true.size
    assert m.fwiou == pytest.approx(np.nansum(freq * iou), rel=1e-12)


def test_absent_classes_are_nan_and_left_out_of_the_means():
    # Ground truth has classes 0 and 1; the prediction also says 2 (a false positive);
    # class 3 appears nowhere.
    target = torch.tensor([[0, 0, 1, 1, 1, IGNORE_INDEX]])
    pred = torch.tensor([[0, 1, 1, 1, 2, 3]])  # the 3 is on an ignored pixel
    cm = ConfusionMatrix(4)
    cm.update(pred, target)
    m = cm.compute()
    assert m.iou[:3] == pytest.approx([1 / 2, 2 / 4, 0.0])
    assert math.isnan(m.iou[3]) and math.isnan(m.dice[3])
    assert math.isnan(m.accuracy[2]) and math.isnan(m.accuracy[3])
    # A class only predicted scores 0 IoU and counts in the mean; an absent one does not.
    assert m.miou == pytest.approx((1 / 2 + 2 / 4 + 0.0) / 3)
    assert m.mean_accuracy == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m.mean_dice == pytest.approx((2 / 3 + 4 / 6 + 0.0) / 3)
    assert m.pixel_accuracy == pytest.approx(3 / 5)
    assert m.fwiou == pytest.approx(2 / 5 * 1 / 2 + 3 / 5 * 2 / 4)


def test_ignored_pixels_never_count():
    pred, target = random_batch(seed=1)
    ignored = target == IGNORE_INDEX
    cm = ConfusionMatrix(C)
    cm.update(pred, target)
    assert cm.matrix.sum() == (~ignored).sum()
    other = torch.where(ignored, (pred + 1) % C, pred)
    cm2 = ConfusionMatrix(C)
    cm2.update(other, target)
    assert torch.equal(cm.matrix, cm2.matrix)
    # Logits at ignored pixels may be anything, even NaN.
    logits = torch.nn.functional.one_hot(pred, C).permute(0, 3, 1, 2).float()
    logits = torch.where(ignored.unsqueeze(1), math.nan, logits)
    cm3 = ConfusionMatrix(C)
    cm3.update(logits, target)
    assert torch.equal(cm.matrix, cm3.matrix)


def test_nothing_counted_gives_nan_everywhere():
    cm = ConfusionMatrix(3)
    cm.update(torch.zeros(2, 4, 4, dtype=torch.long), torch.full((2, 4, 4), IGNORE_INDEX))
    m = cm.compute()
    for value in (m.pixel_accuracy, m.mean_accuracy, m.miou, m.fwiou, m.mean_dice, *m.iou, *m.accuracy, *m.dice):
        assert math.isnan(value)
    d = m.as_dict()
    assert d["miou"] is None and d["per_class"]["0"] == {"iou": None, "accuracy": None, "dice": None}
    assert "-" in format_table(m)


def test_accumulation_is_dataset_level_not_a_mean_of_per_image_scores():
    # A large image where class 1 is found well and a small one where it is missed.
    big_t = torch.zeros(1, 10, 10, dtype=torch.long)
    big_t[:, :5] = 1
    big_p = big_t.clone()
    big_p[:, 5, :2] = 1  # two false positives
    small_t = torch.tensor([[[0, 1], [1, 1]]])
    small_p = torch.zeros_like(small_t)

    dataset = ConfusionMatrix(2)
    per_image = []
    for p, t in ((big_p, big_t), (small_p, small_t)):
        dataset.update(p, t)
        single = ConfusionMatrix(2)
        single.update(p, t)
        per_image.append(single.compute().miou)

    # Pooled counts: class 1 has tp 50, fn 3, fp 2; class 0 has tp 49, fn 2, fp 3.
    expected = (50 / 55 + 49 / 54) / 2
    assert dataset.compute().miou == pytest.approx(expected)
    assert abs(expected - sum(per_image) / 2) > 0.1


def test_several_batches_equal_one_big_batch():
    batches = [random_batch(shape=(2, 9, 11), seed=s) for s in range(3)]
    cm = ConfusionMatrix(C)
    for pred, target in batches:
        cm.update(pred, target)
    big = ConfusionMatrix(C)
    big.update(torch.cat([p for p, _ in batches]), torch.cat([t for _, t in batches]))
    assert torch.equal(cm.matrix, big.matrix)
    assert cm.compute() == big.compute()


def test_logits_give_the_same_matrix_as_their_argmax():
    g = torch.Generator().manual_seed(2)
    logits = torch.randn(2, C, 8, 9, generator=g)
    _, target = random_batch(shape=(2, 8, 9), seed=2)
    a, b = ConfusionMatrix(C), ConfusionMatrix(C)
    a.update(logits, target)
    b.update(logits.argmax(1), target)
    assert torch.equal(a.matrix, b.matrix)
    c = ConfusionMatrix(C)
    c.update(logits.to(torch.bfloat16), target)
    assert c.matrix.sum() == b.matrix.sum()


def test_single_image_uint8_masks_and_reset():
    pred, target = random_batch(shape=(13, 7), seed=3)
    cm = ConfusionMatrix(C)
    cm.update(pred.to(torch.uint8), target.to(torch.uint8))
    np.testing.assert_array_equal(cm.matrix.numpy(), confusion_matrix(*sklearn_inputs(pred, target), labels=range(C)))
    cm.reset()
    assert cm.matrix.sum() == 0 and cm.matrix.shape == (C, C)


def test_a_matrix_filled_in_inference_mode_can_be_used_outside_it():
    pred, target = random_batch(seed=9)
    with torch.inference_mode():
        cm = ConfusionMatrix(C, device="cpu")
        cm.update(pred, target)
    expected = cm.matrix.clone()
    cm.merge(cm).all_reduce()
    assert torch.equal(cm.matrix, 2 * expected)
    cm.reset()
    cm.update(pred, target)
    assert torch.equal(cm.matrix, expected)


def test_merge_adds_counts():
    (p1, t1), (p2, t2) = random_batch(seed=4), random_batch(seed=5)
    a, b, both = ConfusionMatrix(C), ConfusionMatrix(C), ConfusionMatrix(C)
    a.update(p1, t1)
    b.update(p2, t2)
    both.update(torch.cat([p1, p2]), torch.cat([t1, t2]))
    assert a.merge(b) is a
    assert torch.equal(a.matrix, both.matrix)
    with pytest.raises(ValueError, match="classes"):
        a.merge(ConfusionMatrix(C + 1))


def test_bad_input_raises_clear_errors():
    cm = ConfusionMatrix(5)
    target = torch.zeros(2, 4, 4, dtype=torch.long)
    with pytest.raises(ValueError, match=r"\(2, 4, 5\).*\(2, 4, 4\)"):
        cm.update(torch.zeros(2, 4, 5, dtype=torch.long), target)
    with pytest.raises(ValueError, match=r"\(2, 5, 4, 5\).*\(2, 4, 4\)"):
        cm.update(torch.randn(2, 5, 4, 5), target)
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        cm.update(torch.randn(2, 3, 4, 4), target)
    with pytest.raises(ValueError, match=r"\(B, 5, H, W\)"):
        cm.update(torch.rand(2, 4, 4), target)  # float labels are not labels
    bad = target.clone()
    bad[0, 0, :2] = torch.tensor([7, -1])
    with pytest.raises(ValueError, match=r"target has labels \{-1, 7\}"):
        cm.update(target, bad)
    with pytest.raises(ValueError, match=r"pred has labels \{9\}"):
        cm.update(torch.full_like(target, 9), target)
    with pytest.raises(ValueError, match="target"):
        cm.update(target, target.float())
    assert cm.matrix.sum() == 0  # failed updates add nothing
    with pytest.raises(ValueError, match="num_classes"):
        ConfusionMatrix(0)


def test_as_dict_is_json_and_format_table_names_classes():
    pred, target = random_batch(num_classes=3, absent=(2,), seed=6)
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    m = cm.compute()
    assert isinstance(m, SegmentationMetrics)
    names = ["road", "sky", "car"]
    d = json.loads(json.dumps(m.as_dict(names), allow_nan=False))
    assert set(d["per_class"]) == set(names)
    assert d["per_class"]["car"]["iou"] is None
    assert d["per_class"]["sky"]["iou"] == pytest.approx(m.iou[1])
    assert d["miou"] == pytest.approx(m.miou)
    table = format_table(m, names)
    assert "road" in table and "car" in table and f"{100 * m.miou:.2f}" in table
    with pytest.raises(ValueError, match="2 names for 3 classes"):
        m.as_dict(["a", "b"])
    with pytest.raises(ValueError, match="unique"):
        format_table(m, ["a", "a", "b"])
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.miou = 0.0  # type: ignore[misc]


def test_all_reduce_without_a_process_group_is_a_noop():
    pred, target = random_batch(seed=7)
    cm = ConfusionMatrix(C)
    cm.update(pred, target)
    before = cm.matrix.clone()
    assert cm.all_reduce() is cm
    assert torch.equal(cm.matrix, before)


def _all_reduce_worker(rank: int, world_size: int, port: int, out_dir: str) -> None:
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size, timeout=timedelta(seconds=60)
    )
    try:
        pred, target = random_batch(seed=10 + rank)
        cm = ConfusionMatrix(C)
        cm.update(pred, target)
        cm.all_reduce()
        torch.save(cm.matrix, os.path.join(out_dir, f"rank{rank}.pt"))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_all_reduce_sums_across_two_gloo_processes(tmp_path):
    mp.spawn(_all_reduce_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    single = ConfusionMatrix(C)
    for rank in range(2):
        single.update(*random_batch(seed=10 + rank))
    for rank in range(2):
        assert torch.equal(torch.load(tmp_path / f"rank{rank}.pt"), single.matrix)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_matrix_follows_the_data_to_the_gpu():
    pred, target = random_batch(seed=8)
    cm = ConfusionMatrix(C)
    cm.update(pred.cuda(), target.cuda())
    assert cm.device.type == "cuda"
    ref = ConfusionMatrix(C)
    ref.update(pred, target)
    assert torch.equal(cm.matrix.cpu(), ref.matrix)
    with pytest.raises(ValueError, match=r"target has labels \{7\}"):
        cm.update(pred.cuda(), torch.full_like(target, 7).cuda())


def test_balanced_accuracy_warning_free_usage():
    # balanced_accuracy_score warns when a predicted class is absent from y_true; our
    # mean accuracy ignores such classes the same way, without warning.
    target = torch.tensor([[0, 0, 1]])
    pred = torch.tensor([[0, 2, 1]])
    cm = ConfusionMatrix(3)
    cm.update(pred, target)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = balanced_accuracy_score(target.flatten().numpy(), pred.flatten().numpy())
    assert cm.compute().mean_accuracy == pytest.approx(expected)


# -- absent classes are said next to the means ---------------------------------------------


def _metrics(pred, target, num_classes=4):
    cm = ConfusionMatrix(num_classes)
    cm.update(torch.tensor([pred]), torch.tensor([target]))
    return cm.compute()


def test_absent_classes_are_named_next_to_the_means():
    names = ["bg", "road", "sign", "pole"]
    # sign: in neither ground truth nor prediction (NaN, left out); pole: predicted only (IoU 0, counted).
    m = _metrics([0, 0, 1, 3], [0, 0, 1, 1])
    assert m.miou == pytest.approx((1 + 0.5 + 0) / 3)  # the number itself is unchanged: 3 classes, pole as 0
    assert m.absent_classes == [2, 3] and m.miou_classes == 3
    note = absent_note(m, names)
    assert note.startswith("mIoU over 3 of 4 classes (absent from ground truth: sign, pole; ")
    assert "never predicted, so left out: sign; predicted, so counted with IoU 0: pole" in note
    assert note.endswith("mean Dice over the same 3, mean accuracy over the 2 in ground truth")
    assert format_table(m, names).splitlines()[-1] == f"note: {note}"
    d = json.loads(json.dumps(m.as_dict(names), allow_nan=False))
    assert d["absent_classes"] == ["sign", "pole"] and d["miou_classes"] == 3 and d["note"] == note
    assert d["per_class"]["sign"]["iou"] is None and d["per_class"]["pole"]["iou"] == 0.0

    left_out = absent_note(_metrics([0, 1], [0, 1]), names)
    assert left_out.startswith("mIoU over 2 of 4 classes (absent from ground truth and never predicted, so left out: ")
    counted = absent_note(_metrics([2, 3], [0, 1]), names)
    assert counted.startswith("mIoU over 4 of 4 classes (absent from ground truth but predicted, so counted with IoU 0")


def test_no_note_when_every_class_is_present_and_one_when_none_is():
    m = _metrics([0, 1], [0, 1], num_classes=2)
    assert absent_note(m) is None and m.as_dict()["absent_classes"] == [] and m.as_dict()["note"] is None
    assert "note:" not in format_table(m)
    empty = _metrics([0, 1], [IGNORE_INDEX, IGNORE_INDEX], num_classes=2)
    assert "no ground-truth pixel was counted" in format_table(empty)


def test_best_miou_text_carries_the_note_of_its_evaluation():
    # The 0/255-masks failure: background only in the ground truth, predicted everywhere -> mIoU 1.0 over 1 class.
    m = _metrics([0, 0], [0, 0], num_classes=2)
    record = {"kind": "val", "step": 3, **m.as_dict(["background", "foreground"])}
    text = best_miou_text(m.miou, [{"kind": "train", "step": 3, "loss": 0.1}, record])
    assert text == (
        "1.0000; mIoU over 1 of 2 classes (absent from ground truth and never predicted, so left out: foreground); "
        "mean Dice over the same 1, mean accuracy over the 1 in ground truth"
    )
    assert best_miou_text(0.5, []) == "0.5000"  # a resumed run's best may come from an earlier process
    assert best_miou_text(-math.inf, []).startswith("undefined (no validation pixel was counted")
