"""The report's engine without a model: the pixel sample, the error analysis, and one pass
of the collector over synthetic batches turned into a report."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import jaccard_score

from atrous.engine.report import ReportCollector, build_report, report_json, summary_text, write_report
from atrous.engine.report.errors import BadImage, WorstImages, confused_pairs, error_panel, image_miou
from atrous.engine.report.html import render_html
from atrous.engine.report.sample import PixelSample
from atrous.metrics import ConfusionMatrix
from atrous.metrics.bootstrap import image_confusion
from atrous.metrics.boundary import trimap_band

VOID = 255
C = 3


def batch(seed: int, b: int = 2, h: int = 24, w: int = 32):
    """Normalised images, masks with void, logits whose argmax is the labels."""
    g = torch.Generator().manual_seed(seed)
    masks = torch.zeros(b, h, w, dtype=torch.int64)
    masks[:, 4:14, 5:20] = 1
    masks[:, 16:22, 20:30] = 2
    masks[:, 3, :] = VOID
    logits = torch.randn(b, C, h, w, generator=g)
    logits += 2 * torch.nn.functional.one_hot(masks.clamp(max=C - 1), C).permute(0, 3, 1, 2)
    images = torch.randn(b, 3, h, w, generator=g)
    return images, masks, logits, logits.argmax(dim=1)


def test_sample_keeps_every_pixel_below_capacity_and_a_seeded_subset_above():
    scores = torch.arange(2 * 5 * 4, dtype=torch.float32).view(2, 1, 5, 4).expand(2, 2, 5, 4).contiguous()
    masks = torch.arange(2 * 5 * 4).view(2, 5, 4) % C  # a pixel's label follows from its score
    masks[0, 0] = VOID
    everything = PixelSample(100, seed=0)
    everything.add(scores, masks)
    values, labels = everything.result()
    assert everything.seen == 36 and sorted(values[:, 0].tolist()) == list(range(4, 40))
    assert np.array_equal(labels, values[:, 0].astype(np.int64) % C)
    small = [PixelSample(10, seed=s) for s in (0, 0, 1)]
    for sample in small:
        for i in range(2):
            sample.add(scores[i : i + 1], masks[i : i + 1])
    picked = [sorted(s.result()[0][:, 0].tolist()) for s in small]
    assert len(picked[0]) == 10 and len(set(picked[0])) == 10 and picked[0] == picked[1] != picked[2]
    assert min(picked[0]) >= 4  # never a void pixel (values 0..3, the first row of image 0)


def test_image_miou_is_sklearns_jaccard_over_the_classes_in_the_truth():
    _, masks, _, labels = batch(0, b=1)
    target, pred = masks[0].numpy(), labels[0].numpy()
    pred[0, :5] = 2  # class 2 also predicted where the truth is 0
    kept = target != VOID
    present = np.unique(target[kept])
    expected = jaccard_score(target[kept], pred[kept], labels=present, average=None).mean()
    assert image_miou(image_confusion(pred, target, C, ignore_index=VOID)) == pytest.approx(expected)


def test_confused_pairs_by_hand():
    matrix = np.array([[90, 10, 0], [30, 60, 10], [0, 1, 1]])
    pairs = confused_pairs(matrix, ["a", "b", "c"], top=3)
    # shares: c→b 1/2, b→a 30/100, a→b 10/100 and b→c 10/100 (tie: more pixels, then order)
    assert [(p["true"], p["predicted"], p["share"]) for p in pairs] == [
        ("c", "b", 0.5),
        ("b", "a", 0.3),
        ("a", "b", 0.1),
    ]


def test_worst_images_keeps_the_k_lowest():
    worst = WorstImages(2)
    empty = np.zeros((1, 1, 3), np.uint8)
    for index, miou in enumerate([0.5, 0.2, 0.9, 0.2, 0.1, float("nan")]):
        worst.offer(BadImage(index, miou, empty, empty[..., 0], empty[..., 0]))
    assert [(b.index, b.miou) for b in worst.worst_first()] == [(4, 0.1), (1, 0.2)]  # ties: the earlier image


def test_error_panel_colours():
    image = np.full((4, 4, 3), 200, np.uint8)
    target = np.array([[0, 0, 1, 1]] * 3 + [[VOID] * 4])
    pred = np.array([[0, 1, 1, 1]] * 4)
    panel = error_panel(image, target, pred, [(0, 0, 0), (0, 0, 255)], ignore_index=VOID)
    factor = panel.shape[0] // 4
    errors = panel[:, -4 * factor :][::factor, ::factor]
    assert tuple(errors[0, 1]) == (230, 25, 25) and tuple(errors[3, 0]) == (128, 128, 128)
    assert tuple(errors[0, 0]) == (70, 70, 70)  # right: the image darkened


def test_one_pass_becomes_a_consistent_report(tmp_path):
    collector = ReportCollector(C, probabilities=False, worst=2, seed=0)
    matrix = ConfusionMatrix(C)
    for seed in range(3):
        images, masks, logits, labels = batch(seed)
        collector(images, masks, logits, labels)
        matrix.update(labels, masks)
    collected = collector.result()
    assert collected.matrices.shape == (6, C, C) and collected.pixels_scored == 6 * 23 * 32
    assert collected.sample_scores.shape == (6 * 23 * 32, C)  # all pixels: below capacity
    names = ["bg", "box", "bar"]
    report = build_report(
        collected,
        matrix.compute(),
        matrix.matrix.numpy(),
        names,
        [(0, 0, 0), (255, 0, 0), (0, 255, 0)],
        settings={"model": "m", "split": "val"},
        resamples=200,
    )
    record = json.loads(report_json(report))  # strict JSON: no NaN anywhere
    assert record["miou"] == pytest.approx(matrix.compute().miou)
    assert record["bootstrap"]["miou"]["low"] <= record["miou"] <= record["bootstrap"]["miou"]["high"]
    assert [w["file"] for w in record["worst_images"]] == ["worst_01.png", "worst_02.png"]
    assert set(report.figures) == {"reliability.png", "worst_01.png", "worst_02.png"}
    assert record["calibration"]["pixels_sampled"] == collected.pixels_scored
    page = render_html(record, report.figures)
    assert "http" not in page and page.count("data:image/png;base64,") == 3
    assert "mIoU" in summary_text(record)
    with pytest.raises(RuntimeError, match="do not add up"):
        build_report(collected, matrix.compute(), np.zeros((C, C)), names, [(0, 0, 0)] * 3, settings={})
    # written: an earlier report's pictures under the report's names go, other files stay
    (tmp_path / "worst_05.png").write_bytes(b"older")
    (tmp_path / "notes.txt").write_text("mine")
    write_report(tmp_path, report)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == sorted(["notes.txt", *json.loads((tmp_path / "report.json").read_text())["files"]])
    assert "worst_05.png" not in names and (tmp_path / "notes.txt").read_text() == "mine"


def test_trimap_error_share_and_accuracy_outside_the_band_by_hand():
    """The band's share of all wrong pixels and the accuracy outside it, counted with numpy
    over the same images (the band itself is checked against a literal loop in
    tests/metrics/test_boundary.py)."""
    collector = ReportCollector(C, probabilities=False, worst=1, seed=0)
    matrix = ConfusionMatrix(C)
    pairs = []
    for seed in range(2):
        images, masks, logits, labels = batch(seed)
        labels[:, 10:13, 8:12] = 2  # a wrong blob inside class 1, away from most outlines
        collector(images, masks, logits, labels)
        matrix.update(labels, masks)
        pairs += list(zip(labels, masks, strict=True))
    report = build_report(
        collector.result(),
        matrix.compute(),
        matrix.matrix.numpy(),
        ["bg", "box", "bar"],
        [(0, 0, 0)] * 3,
        settings={},
        resamples=10,
    )
    record = report.record
    for d in record["trimap"]["widths"]:
        wrong_in = wrong = right_out = out = 0
        for pred, mask in pairs:
            valid = (mask != VOID).numpy()
            band = trimap_band(mask, d).numpy() & valid
            bad = (pred != mask).numpy() & valid
            wrong_in, wrong = wrong_in + (bad & band).sum(), wrong + bad.sum()
            right_out, out = right_out + (~bad & ~band & valid).sum(), out + (~band & valid).sum()
        assert record["trimap"]["error_share"][str(d)] == pytest.approx(wrong_in / wrong)
        if out:
            assert record["trimap"]["accuracy_outside"][str(d)] == pytest.approx(right_out / out)
        else:  # the band covers these small images: nothing outside to score
            assert record["trimap"]["accuracy_outside"][str(d)] is None and d == 16
    shares = [record["trimap"]["error_share"][str(d)] for d in record["trimap"]["widths"]]
    assert shares == sorted(shares) and 0 < shares[0] < shares[-1] <= 1  # wider bands hold more errors
    assert "share of the errors within d px" in summary_text(record)
    assert "accuracy outside %" in render_html(record, report.figures)
