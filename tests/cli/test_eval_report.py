"""``atrous eval RUN --report DIR`` end to end on a tiny model and a folder dataset.

One report run (with ``--compare flip --fit-temperature --json``) is checked figure by
figure against an independent computation from what ``atrous predict`` writes for the same
images: scikit-learn's confusion matrices and Jaccard scores, the bootstrap by hand, and
ECE from scikit-learn's calibration curve of predict's probabilities.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from sklearn.calibration import calibration_curve
from sklearn.metrics import confusion_matrix, jaccard_score
from tests.helpers import calibrate_norm_stats

import atrous
from atrous.cli import main

NAMES = [f"im{i}" for i in range(4)]
C = 3
H, W = 40, 48
KEYS = {"miou", "per_class", "bootstrap", "boundary", "trimap", "calibration", "objects", "confused_pairs"}
KEYS |= {"worst_images", "compare", "absent_classes", "note", "images", "files"}


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """Data, a model, predict's labels and probabilities, and one report run."""
    root = tmp_path_factory.mktemp("eval_report")
    rng = np.random.default_rng(0)
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "masks").mkdir()
    masks = {}
    for i, name in enumerate(NAMES):
        coarse = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
        Image.fromarray(np.kron(coarse, np.ones((8, 8, 1), np.uint8))).save(root / "data" / "images" / f"{name}.png")
        mask = np.zeros((H, W), np.uint8)
        mask[5 + i : 20, 5:25] = 1
        mask[25:35, 30 - 2 * i : 45] = 2
        mask[4, 5:25] = 255  # a void outline, as VOC draws them
        Image.fromarray(mask).save(root / "data" / "masks" / f"{name}.png")
        masks[name] = mask
    torch.manual_seed(0)
    model = calibrate_norm_stats(atrous.create_model("deeplabv3_resnet18", num_classes=C), shape=(2, 3, 32, 32))
    model.save_pretrained(root / "model")
    (root / "recipe.yaml").write_text(
        "model: {name: deeplabv3_resnet18}\n"
        f"data: {{dataset: folder, root: {root / 'data'}, val_split: train, options: {{num_classes: {C}}}, "
        "val_batch_size: 1, workers: 0}\n"  # batch 1: labels bit-identical to predict's
    )
    fp32 = ["--precision", "fp32"]
    before = root / "before"
    assert (
        main(
            ["predict", str(root / "model"), str(root / "data" / "images"), "-o", str(before), "--probabilities", *fp32]
        )
        == 0
    )
    report = root / "report"
    command = ["eval", str(root / "model"), "-c", str(root / "recipe.yaml"), *fp32, "--report", str(report)]
    options = ["--bootstrap", "200", "--seed", "3", "--worst", "2", "--compare", "flip", "--fit-temperature"]
    assert main([*command, *options, "--json", str(root / "copy.json")]) == 0
    return root, masks, before, report


def test_the_report_folder(case):
    root, _, _, report = case
    html = (report / "report.html").read_text()
    assert "http" not in html and "<script" not in html and html.count("data:image/png;base64,") == 3
    record = json.loads((report / "report.json").read_text())
    assert set(record) >= KEYS
    assert sorted(p.name for p in report.iterdir()) == sorted(record["files"])
    assert (root / "copy.json").read_text() == (report / "report.json").read_text()  # --json: the same record


def test_figures_against_an_independent_computation(case):
    _, masks, before, report = case
    record = json.loads((report / "report.json").read_text())
    labels = {name: np.array(Image.open(before / f"{name}.png")) for name in NAMES}
    matrices = []
    image_miou = {}
    for name in NAMES:
        kept = masks[name] != 255
        truth, pred = masks[name][kept], labels[name][kept]
        matrices.append(confusion_matrix(truth, pred, labels=range(C)))
        image_miou[name] = jaccard_score(truth, pred, labels=np.unique(truth), average=None).mean()
    matrices = np.stack(matrices)
    # dataset mIoU from the summed matrix, and the worst images by per-image mIoU
    total = matrices.sum(axis=0)
    iou = np.diag(total) / (total.sum(0) + total.sum(1) - np.diag(total))
    assert record["miou"] == pytest.approx(iou.mean())
    worst = sorted(NAMES, key=lambda n: image_miou[n])[:2]
    assert [w["name"] for w in record["worst_images"]] == [f"{n}.png" for n in worst]
    assert [w["miou"] for w in record["worst_images"]] == pytest.approx([image_miou[n] for n in worst])
    # the bootstrap by hand: seed 3, 200 resamples of the 4 images
    draws = np.random.default_rng(3).integers(0, 4, size=(200, 4))
    mious = []
    for d in draws:
        m = matrices[d].sum(axis=0)
        union = m.sum(0) + m.sum(1) - np.diag(m)
        mious.append(np.mean((np.diag(m) / union)[union > 0]))
    low, high = np.percentile(mious, [2.5, 97.5])
    assert (record["bootstrap"]["miou"]["low"], record["bootstrap"]["miou"]["high"]) == pytest.approx((low, high))
    # ECE from predict's probabilities (every pixel is in the sample: 4 small images)
    confidence, correct = [], []
    for name in NAMES:
        probs = np.load(before / f"{name}_probs.npy")
        kept = masks[name] != 255
        confidence.append(probs.max(axis=0)[kept])
        correct.append((probs.argmax(axis=0) == masks[name])[kept])
    confidence, correct = np.concatenate(confidence), np.concatenate(correct)
    accuracy, mean_confidence = calibration_curve(correct, confidence, n_bins=15)
    counts = np.array([b["count"] for b in record["calibration"]["reliability"] if b["count"]])
    ece = (counts / counts.sum() * np.abs(accuracy - mean_confidence)).sum()
    assert record["calibration"]["pixels_sampled"] == record["calibration"]["pixels_scored"] == confidence.size
    assert record["calibration"]["ece"] == pytest.approx(ece, abs=1e-5)


def test_compare_flip_is_the_difference_of_two_evaluations(case, tmp_path):
    root, _, _, report = case
    compare = json.loads((report / "report.json").read_text())["compare"]
    plain = tmp_path / "flip.json"
    command = ["eval", str(root / "model"), "-c", str(root / "recipe.yaml"), "--precision", "fp32"]
    assert main([*command, "--flip", "--json", str(plain)]) == 0
    flipped = json.loads(plain.read_text())["miou"]
    assert compare["against"] == "flip" and compare["settings"]["flip"] is True
    assert compare["miou"]["other"] == pytest.approx(flipped)
    difference = compare["miou"]["difference"]
    assert difference["estimate"] == pytest.approx(compare["miou"]["this"] - flipped)
    assert difference["low"] <= difference["high"]


def test_fit_temperature_changes_probabilities_not_labels(case, tmp_path, capsys):
    root, _, before, _ = case
    stored = json.loads((root / "model" / "temperature.json").read_text())
    record = json.loads((root / "report" / "report.json").read_text())
    assert stored["temperature"] == record["calibration"]["temperature"] > 0
    after = tmp_path / "after"
    image = str(root / "data" / "images" / "im0.png")  # one image is enough (predict is slow on 2 cores)
    assert (
        main(["predict", str(root / "model"), image, "-o", str(after), "--probabilities", "--precision", "fp32"]) == 0
    )
    assert "temperature-scaled" in capsys.readouterr().err
    assert np.array_equal(np.array(Image.open(after / "im0.png")), np.array(Image.open(before / "im0.png")))
    old, new = np.load(before / "im0_probs.npy"), np.load(after / "im0_probs.npy")
    assert not np.allclose(old, new) and np.allclose(new.sum(axis=0), 1, atol=1e-5)
    t = stored["temperature"]  # softmax(z / T) from softmax(z): p^(1/T), renormalised
    assert np.allclose(new, old ** (1 / t) / (old ** (1 / t)).sum(axis=0), atol=1e-5)
    # a second fit does not replace the file without --overwrite, and says so before evaluating
    command = ["eval", str(root / "model"), "-c", str(root / "recipe.yaml"), "--report", str(tmp_path / "r2")]
    assert main([*command, "--fit-temperature"]) == 2
    err = capsys.readouterr().err
    assert "temperature.json already exists" in err and "--overwrite" in err
    assert not (tmp_path / "r2").exists()


def test_an_existing_report_folder_needs_overwrite(case, tmp_path, capsys):
    root, _, _, _ = case
    folder = tmp_path / "report"
    folder.mkdir()
    (folder / "notes.txt").write_text("mine")
    command = ["eval", str(root / "model"), "-c", str(root / "recipe.yaml"), "--report", str(folder)]
    assert main(command) == 2  # refused before the model loads (what --overwrite then replaces: test_report.py)
    assert "is not empty; choose a new folder or pass --overwrite" in capsys.readouterr().err
    assert [p.name for p in folder.iterdir()] == ["notes.txt"]
    assert main(["eval", str(root / "model"), "-c", str(root / "recipe.yaml"), "--report", str(root / "model")]) == 2
    assert "would be written over the model's file" in capsys.readouterr().err  # never into the model's folder


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--report", "R", "--bootstrap", "0"], "--bootstrap must be at least 1"),
        (["--report", "R", "--compare", "sideways"], "--compare sideways"),
        (["--report", "R", "--compare", "os=7"], "--compare os=7"),
        (["--report", "R", "--compare", "crf=bogus"], "--compare crf=bogus"),
        (["--report", "R", "--worst", "-1"], "--worst"),
        (["--compare", "flip"], "--compare is a report option"),
        (["--fit-temperature"], "--fit-temperature is a report option"),
    ],
)
def test_bad_report_options_are_one_line_and_exit_2(case, tmp_path, capsys, flags, message):
    root, _, _, _ = case
    flags = [str(tmp_path / "r") if f == "R" else f for f in flags]
    assert main(["eval", str(root / "model"), "-c", str(root / "recipe.yaml"), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_a_compared_file_that_is_no_model_fails_before_the_evaluation(case, tmp_path, capsys, monkeypatch):
    import atrous.engine.evaluator

    root, _, _, _ = case
    text = tmp_path / "text.png"
    text.write_text("hello")

    def no_pass(*args, **kwargs):
        raise AssertionError("evaluated before --compare was checked")

    monkeypatch.setattr(atrous.engine.evaluator, "evaluate", no_pass)
    command = ["eval", str(root / "model"), "-c", str(root / "recipe.yaml"), "--report", str(tmp_path / "r")]
    assert main([*command, "--compare", str(text)]) == 2
    err = capsys.readouterr().err.strip()
    assert f"--compare {text}: " in err and "\n" not in err
    assert not (tmp_path / "r").exists()


def test_instance_models_have_no_report(case, tmp_path, capsys):
    root, _, _, _ = case
    recipe = tmp_path / "instance.yaml"
    recipe.write_text((root / "recipe.yaml").read_text().replace("deeplabv3_resnet18", "maskrcnn_resnet18_fpn"))
    assert main(["eval", str(root / "model"), "-c", str(recipe), "--report", str(tmp_path / "r")]) == 2
    assert "--report applies to semantic models" in capsys.readouterr().err


def test_compare_settings_parse_the_crf():
    from atrous.cli.eval_report import parse_compare
    from atrous.inference.crf import resolve_crf

    assert parse_compare("crf").changes == {"crf": resolve_crf("deeplab_v2")}
    assert parse_compare("crf=deeplab_largefov+flip").changes == {"crf": resolve_crf("deeplab_largefov"), "flip": True}
    assert parse_compare("nocrf").changes == {"crf": None}
