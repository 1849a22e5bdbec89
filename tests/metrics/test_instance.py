import math

import numpy as np
import pytest
import torch

from atrous.metrics.instance import InstanceEvaluator, summarize

SIZE = (20, 20)
KINDS = ("box", "mask")


def _mask(rect: tuple[int, int, int, int]) -> torch.Tensor:
    """A {0, 1} mask of rows r0..r1-1 and columns c0..c1-1, given (r0, r1, c0, c1)."""
    r0, r1, c0, c1 = rect
    mask = torch.zeros(SIZE, dtype=torch.uint8)
    mask[r0:r1, c0:c1] = 1
    return mask


def _box(rect: tuple[int, int, int, int]) -> list[float]:
    # torchvision's convention: columns c0..c1-1 give x1 = c0, x2 = c1.
    r0, r1, c0, c1 = rect
    return [c0, r0, c1, r1]


def _target(*rects, labels=None, iscrowd=None) -> dict:
    target = {
        "boxes": torch.tensor([_box(r) for r in rects], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels or [1] * len(rects), dtype=torch.int64),
        "masks": torch.stack([_mask(r) for r in rects]) if rects else torch.zeros(0, *SIZE, dtype=torch.uint8),
    }
    if iscrowd is not None:
        target["iscrowd"] = torch.tensor(iscrowd, dtype=torch.int64)
    return target


def _prediction(rects, scores, *, boxes=None, labels=None) -> dict:
    """MaskRCNN's eval output: masks (M, 1, H, W) float; boxes default to the masks' boxes."""
    rects = list(rects)
    masks = torch.stack([_mask(r) for r in rects]).float() if rects else torch.zeros(0, *SIZE)
    return {
        "boxes": torch.tensor(boxes or [_box(r) for r in rects], dtype=torch.float32).reshape(-1, 4),
        "labels": torch.tensor(labels or [1] * len(rects), dtype=torch.int64),
        "scores": torch.tensor(scores, dtype=torch.float32),
        "masks": masks[:, None],
    }


def _evaluate(*images, categories=1, **kwargs) -> dict[str, float]:
    evaluator = InstanceEvaluator(categories, **kwargs)
    for image_id, (prediction, target) in enumerate(images):
        evaluator.update(image_id, prediction, target)
    return evaluator.compute()


def _assert_all(results: dict[str, float], metrics: dict[str, float], kinds=KINDS) -> None:
    for kind in kinds:
        for name, expected in metrics.items():
            assert results[f"{kind}_{name}"] == pytest.approx(expected, abs=1e-6), f"{kind}_{name}"


# Two 10×10 ground-truth squares (100 px each) in a 20×20 image, one category.
GT_A = (0, 10, 0, 10)
GT_B = (10, 20, 10, 20)
PERFECT_A = GT_A  # IoU 1 with A
PARTIAL_B = (10, 18, 10, 18)  # an 8×8 square inside B: IoU 64/100 = 0.64, box and mask alike
MISS = (0, 5, 12, 20)  # overlaps neither ground truth: a false positive at every threshold


def test_hand_computed_ap_with_highest_scored_false_positive():
    # Ranked by score: MISS (0.9), PERFECT_A (0.8), PARTIAL_B (0.7); 2 ground truths.
    #
    # IoU thresholds 0.50, 0.55, 0.60 (PARTIAL_B matches, 0.64 >= t):
    #   TP/FP = F, T, T → cumulative TP 0, 1, 2; FP 1, 1, 1
    #   recall 0, 1/2, 1; precision 0, 1/2, 2/3 → made monotone from the right: 2/3, 2/3, 2/3
    #   each of the 101 recall points r reads the precision at the first rank with recall >= r:
    #   all 101 read 2/3, so AP = 2/3.
    # IoU thresholds 0.65 … 0.95 (7 of them; PARTIAL_B is now a false positive):
    #   TP/FP = F, T, F → cumulative TP 0, 1, 1; FP 1, 1, 2
    #   recall 0, 1/2, 1/2; precision 0, 1/2, 1/3 → monotone: 1/2, 1/2, 1/3
    #   r = 0, 0.01, …, 0.50 (51 points) read 1/2; r > 0.5 is never reached (50 points) → 0.
    #   AP = 51 · (1/2) / 101 = 25.5 / 101.
    # AP (mean over the 10 thresholds) = (3 · 2/3 + 7 · 25.5/101) / 10 = 380.5 / 1010.
    # AR100: recall 1 at 3 thresholds, 1/2 at 7 → 0.65. AR1: the one detection kept is MISS → 0.
    # Every object is small (area < 32²), so medium/large are undefined (NaN).
    target = _target(GT_A, GT_B)
    prediction = _prediction([MISS, PERFECT_A, PARTIAL_B], [0.9, 0.8, 0.7])
    results = _evaluate((prediction, target))
    _assert_all(
        results,
        {
            "AP50": 2 / 3,
            "AP75": 25.5 / 101,
            "AP": 380.5 / 1010,
            "AP_small": 380.5 / 1010,
            "AR1": 0.0,
            "AR10": 0.65,
            "AR100": 0.65,
        },
    )
    for kind in KINDS:
        assert math.isnan(results[f"{kind}_AP_medium"]) and math.isnan(results[f"{kind}_AP_large"])


def test_hand_computed_ap_with_lowest_scored_false_positive():
    # The same three detections, the false positive now last: PERFECT_A (0.9), PARTIAL_B (0.8), MISS (0.7).
    # t <= 0.60: TP/FP = T, T, F → recall 1/2, 1, 1; precision 1, 1, 2/3 → monotone 1, 1, 2/3;
    #   r <= 0.5 reads rank 1 (1), r > 0.5 reads rank 2 (1): AP = 1.
    # t >= 0.65: TP/FP = T, F, F → recall 1/2, 1/2, 1/2; precision 1, 1/2, 1/3 → monotone 1, 1/2, 1/3;
    #   r <= 0.5 (51 points) read 1, the other 50 read 0: AP = 51/101.
    # AP = (3 · 1 + 7 · 51/101) / 10 = 660 / 1010.
    target = _target(GT_A, GT_B)
    prediction = _prediction([PERFECT_A, PARTIAL_B, MISS], [0.9, 0.8, 0.7])
    results = _evaluate((prediction, target))
    _assert_all(results, {"AP50": 1.0, "AP75": 51 / 101, "AP": 660 / 1010, "AR1": 0.5})


def test_perfect_predictions_score_one():
    target = _target(GT_A, GT_B, labels=[1, 2])
    prediction = _prediction([GT_B, GT_A], [0.6, 0.7], labels=[2, 1])
    results = _evaluate((prediction, target), categories=2)
    _assert_all(results, {"AP": 1.0, "AP50": 1.0, "AP75": 1.0, "AR100": 1.0})


def test_no_predictions_score_zero():
    results = _evaluate((_prediction([], []), _target(GT_A, GT_B)))
    _assert_all(results, {"AP": 0.0, "AP50": 0.0, "AP75": 0.0, "AR100": 0.0})
    # A prediction without a masks key at all (nothing detected) is fine too.
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64), "scores": torch.zeros(0)}
    assert _evaluate((empty, _target(GT_A)))["mask_AP"] == 0.0


def test_false_positives_on_an_image_without_ground_truth_count():
    # Image 0: one perfect detection (0.5). Image 1: no instances, one detection (0.9).
    # Ranked: F, T → recall 0, 1; precision 0, 1/2 → monotone 1/2, 1/2: AP = 1/2 at every threshold.
    results = _evaluate(
        (_prediction([GT_A], [0.5]), _target(GT_A)),
        (_prediction([GT_B], [0.9]), _target()),
    )
    _assert_all(results, {"AP": 0.5, "AP50": 0.5, "AP75": 0.5})


def test_no_ground_truth_at_all_is_nan():
    results = _evaluate((_prediction([GT_A], [0.9]), _target()), (_prediction([], []), _target()))
    assert all(math.isnan(v) for v in results.values())
    # A category without ground truth is left out of the mean, not counted as 0.
    results = _evaluate((_prediction([GT_A, GT_B], [0.9, 0.8], labels=[1, 2]), _target(GT_A)), categories=2)
    _assert_all(results, {"AP": 1.0})


def test_box_ap_uses_boxes_and_mask_ap_uses_masks():
    # Right box, wrong mask: the mask is a 5×5 corner of A (IoU 0.25) but the box is A's.
    right_box = _prediction([(0, 5, 0, 5)], [0.9], boxes=[_box(GT_A)])
    results = _evaluate((right_box, _target(GT_A)))
    assert results["box_AP"] == pytest.approx(1.0)
    assert results["mask_AP"] == pytest.approx(0.0)
    # Right mask, wrong box.
    right_mask = _prediction([GT_A], [0.9], boxes=[_box(GT_B)])
    results = _evaluate((right_mask, _target(GT_A)))
    assert results["box_AP"] == pytest.approx(0.0)
    assert results["mask_AP"] == pytest.approx(1.0)


def test_ground_truth_boxes_follow_the_mask_convention():
    # Without target boxes, they come from the masks (pycocotools toBbox: width = x_max − x_min + 1),
    # which must agree with torchvision-style boxes (x2 = x_max + 1) on the predictions.
    target = _target(GT_A, (3, 6, 3, 6))
    del target["boxes"]
    prediction = _prediction([GT_A, (3, 6, 3, 6)], [0.9, 0.8])
    assert prediction["boxes"][1].tolist() == [3, 3, 6, 6]
    _assert_all(_evaluate((prediction, target)), {"AP": 1.0}, kinds=("box",))


def test_detections_on_crowd_regions_are_ignored():
    target = _target(GT_A, GT_B, iscrowd=[0, 1])
    prediction = _prediction([GT_B, GT_A], [0.9, 0.8])  # the crowd match is neither TP nor FP
    _assert_all(_evaluate((prediction, target)), {"AP": 1.0})


def test_ranking_is_over_the_whole_dataset():
    # Image 0: PERFECT_A at 0.8. Image 1: a miss at 0.9, a perfect B at 0.7.
    # Per image the APs would be 1 and 1/2 (mean 0.75); over the dataset the ranking is
    # F, T, T → precision 0, 1/2, 2/3 → monotone 2/3 everywhere: AP = 2/3.
    evaluator = InstanceEvaluator(1)
    evaluator.update(0, _prediction([PERFECT_A], [0.8]), _target(GT_A))
    evaluator.update(1, _prediction([MISS, GT_B], [0.9, 0.7]), _target(GT_B))
    assert len(evaluator) == 2
    _assert_all(evaluator.compute(), {"AP": 2 / 3, "AP50": 2 / 3, "AP75": 2 / 3})
    # compute() does not consume anything: a second call agrees.
    _assert_all(evaluator.compute(), {"AP": 2 / 3})

    evaluator.reset()
    assert len(evaluator) == 0
    assert all(math.isnan(v) for v in evaluator.compute().values())
    evaluator.update(1, _prediction([GT_B], [0.7]), _target(GT_B))  # the id is free again
    _assert_all(evaluator.compute(), {"AP": 1.0})


def test_repeated_image_id_and_merge():
    evaluator = InstanceEvaluator(1)
    evaluator.update(torch.tensor(3), _prediction([GT_A], [0.8]), _target(GT_A))
    with pytest.raises(ValueError, match="already added"):
        evaluator.update(3, _prediction([GT_A], [0.8]), _target(GT_A))
    other = InstanceEvaluator(1)
    other.update(4, _prediction([MISS, GT_B], [0.9, 0.7]), _target(GT_B))
    _assert_all(evaluator.merge(other).all_gather().compute(), {"AP": 2 / 3})
    with pytest.raises(ValueError, match="in both"):
        evaluator.merge(other)


def test_probabilities_are_binarised_above_one_half():
    # Inside A 0.9, everywhere else exactly 0.5: background at the 0.5 threshold (torchvision
    # uses > 0.5); were it foreground, the mask would cover the image and its IoU be 100/400.
    probs = torch.full((1, 1, *SIZE), 0.5)
    probs[0, 0, :10, :10] = 0.9
    prediction = {
        "boxes": torch.tensor([_box(GT_A)]),
        "labels": torch.tensor([1]),
        "scores": torch.tensor([0.99]),
        "masks": probs,
    }
    assert _evaluate((prediction, _target(GT_A)))["mask_AP"] == pytest.approx(1.0)
    assert _evaluate((prediction, _target(GT_A)), mask_threshold=0.4)["mask_AP"] == pytest.approx(0.0)


def test_numpy_and_device_inputs():
    prediction = _prediction([MISS, PERFECT_A, PARTIAL_B], [0.9, 0.8, 0.7])
    target = _target(GT_A, GT_B)
    expected = {"AP": 380.5 / 1010}
    _assert_all(_evaluate(({k: v.numpy() for k, v in prediction.items()}, target)), expected)
    if torch.cuda.is_available():
        cuda = {k: v.cuda() for k, v in prediction.items()}
        _assert_all(_evaluate((cuda, {k: v.cuda() for k, v in target.items()})), expected)


def test_bbox_only_needs_no_masks():
    target = {"boxes": torch.tensor([_box(GT_A)], dtype=torch.float32), "labels": torch.tensor([1])}
    prediction = {k: v for k, v in _prediction([GT_A], [0.9]).items() if k != "masks"}
    results = _evaluate((prediction, target), iou_types=("bbox",))
    assert set(results) == {
        "box_AP",
        "box_AP50",
        "box_AP75",
        "box_AP_small",
        "box_AP_medium",
        "box_AP_large",
        "box_AR1",
        "box_AR10",
        "box_AR100",
        "box_AR_small",
        "box_AR_medium",
        "box_AR_large",
    }
    assert results["box_AP"] == pytest.approx(1.0)


def test_max_dets_limits_detections_per_image():
    # Two misses outscore the perfect match; with max_dets=2 the match is never seen.
    prediction = _prediction([MISS, (15, 20, 0, 5), GT_A], [0.9, 0.8, 0.7])
    results = _evaluate((prediction, _target(GT_A)), max_dets=2)
    assert results["mask_AP"] == 0.0 and "mask_AR2" in results
    # With the default (100) it is: F, F, T → precision 1/3 at recall 1.
    _assert_all(_evaluate((prediction, _target(GT_A))), {"AP": 1 / 3})


def test_invalid_inputs():
    with pytest.raises(ValueError, match="not categories"):
        _evaluate((_prediction([GT_A], [0.9], labels=[3]), _target(GT_A)), categories=2)
    with pytest.raises(ValueError, match="not categories"):
        _evaluate((_prediction([], []), _target(GT_A, labels=[0])))
    with pytest.raises(ValueError, match="sizes disagree"):
        prediction = _prediction([GT_A], [0.9])
        prediction["masks"] = torch.zeros(1, 1, 10, 10)
        _evaluate((prediction, _target(GT_A)))
    with pytest.raises(ValueError, match="iou_types"):
        InstanceEvaluator(1, iou_types=("keypoints",))
    with pytest.raises(ValueError, match="scores"):
        _evaluate(({**_prediction([GT_A], [0.9]), "scores": torch.zeros(2)}, _target(GT_A)))


def test_summarize():
    results = _evaluate((_prediction([MISS, PERFECT_A, PARTIAL_B], [0.9, 0.8, 0.7]), _target(GT_A, GT_B)))
    table = summarize(results)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["AP", "AP50", "AP75"]
    assert lines[2].split()[:4] == ["box", "37.67", "66.67", "25.25"]
    assert lines[3].startswith("mask")
    assert "-" in lines[2].split()  # AP_medium is undefined
    assert np.isfinite(results["mask_AP"])


def test_agrees_with_pycocotools_load_res():
    # The same data through pycocotools' own path (a GT COCO object plus ``loadRes`` on result
    # dicts, as torchvision's reference evaluation does): random rectangles, 3 images, 2 classes.
    import contextlib
    import io

    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(0)

    def rects(n):
        out = []
        for _ in range(n):
            r0, c0 = rng.integers(0, 14, size=2)
            h, w = rng.integers(2, 7, size=2)
            out.append((int(r0), int(r0 + h), int(c0), int(c0 + w)))
        return out

    def rle(rect):
        return mask_utils.encode(np.asfortranarray(_mask(rect).numpy()))

    evaluator = InstanceEvaluator(2)
    gt = {"images": [], "categories": [{"id": 1}, {"id": 2}], "annotations": []}
    results = {"bbox": [], "segm": []}
    for image_id in range(3):
        gt_rects = rects(3)
        gt_labels = rng.integers(1, 3, size=3).tolist()
        # Jittered copies of the ground truth (IoUs spread over the thresholds) and two strays.
        dt_rects = [(r0, r1 + int(rng.integers(0, 3)), c0 + int(rng.integers(0, 2)), c1) for r0, r1, c0, c1 in gt_rects]
        dt_rects += rects(2)
        dt_labels = gt_labels + rng.integers(1, 3, size=2).tolist()
        scores = rng.permutation(np.linspace(0.1, 0.9, 5)).tolist()
        evaluator.update(
            image_id,
            _prediction(dt_rects, scores, labels=dt_labels),
            _target(*gt_rects, labels=gt_labels),
        )
        gt["images"].append({"id": image_id, "height": SIZE[0], "width": SIZE[1]})
        for rect, label in zip(gt_rects, gt_labels, strict=True):
            r0, r1, c0, c1 = rect
            gt["annotations"].append(
                {
                    "id": len(gt["annotations"]) + 1,
                    "image_id": image_id,
                    "category_id": label,
                    "bbox": [c0, r0, c1 - c0, r1 - r0],
                    "area": (r1 - r0) * (c1 - c0),
                    "iscrowd": 0,
                    "segmentation": rle(rect),
                }
            )
        for rect, label, score in zip(dt_rects, dt_labels, scores, strict=True):
            r0, r1, c0, c1 = rect
            common = {"image_id": image_id, "category_id": label, "score": score}
            results["bbox"].append({**common, "bbox": [c0, r0, c1 - c0, r1 - r0]})
            results["segm"].append({**common, "segmentation": rle(rect)})

    ours = evaluator.compute()
    assert 0.0 < ours["mask_AP"] < 1.0
    for iou_type, kind in (("bbox", "box"), ("segm", "mask")):
        with contextlib.redirect_stdout(io.StringIO()):
            coco_gt = COCO()
            coco_gt.dataset = gt
            coco_gt.createIndex()
            reference = COCOeval(coco_gt, coco_gt.loadRes(results[iou_type]), iouType=iou_type)
            reference.evaluate()
            reference.accumulate()
            reference.summarize()
        names = ["AP", "AP50", "AP75", "AP_small", "AP_medium", "AP_large", "AR1", "AR10", "AR100"]
        for name, value in zip(names, reference.stats, strict=False):
            expected = math.nan if value == -1 else value
            assert ours[f"{kind}_{name}"] == pytest.approx(expected, abs=1e-12, nan_ok=True), f"{kind}_{name}"


def test_three_hundred_instances_in_one_image():
    """pycocotools 2.0.11's area() overflows at 256 masks in one call; an image of nuclei has 300+."""
    import torch

    from atrous.metrics.instance import InstanceEvaluator

    masks = torch.zeros(300, 60, 100, dtype=torch.uint8)
    boxes = []
    for i in range(300):
        y, x = divmod(i, 20)
        masks[i, 4 * y : 4 * y + 3, 5 * x : 5 * x + 4] = 1
        boxes.append([5 * x, 4 * y, 5 * x + 4, 4 * y + 3])
    target = {
        "boxes": torch.tensor(boxes, dtype=torch.float32),
        "labels": torch.ones(300, dtype=torch.long),
        "masks": masks,
    }
    prediction = {**target, "scores": torch.linspace(1, 0.5, 300), "masks": masks[:, None].float()}
    evaluator = InstanceEvaluator(1, max_dets=300)
    evaluator.update(0, prediction, target)
    results = evaluator.compute()
    assert results["mask_AP50"] == 1.0 and results["box_AP50"] == 1.0
