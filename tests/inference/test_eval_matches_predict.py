"""``atrous eval`` scores exactly the labels ``atrous predict`` writes.

Both take their labels from one function (:func:`atrous.inference.tta.predict_batch`:
mirror-pad to the output stride, the inference path, test-time augmentation, crop), and
with ``--crf`` refine them with one function (:func:`atrous.inference.crf.refine_with_crf`,
eval recovering the pictures from its normalised batch). The images here are odd-sized (no
side a multiple of the output stride), where an evaluator that ran the model on the raw
image would score other labels than prediction writes.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from tests.helpers import calibrate_norm_stats

import atrous
from atrous.cli import main
from atrous.metrics import ConfusionMatrix

SIZES = {"a": (37, 53), "b": (61, 45), "c": (29, 70)}  # (H, W); the model's output stride is 16
NUM_CLASSES = 3


@pytest.fixture(scope="module")
def case(tmp_path_factory):
    """A folder dataset of odd-sized images with random masks (some pixels ignored), a
    small saved model with realistic norm statistics, and a recipe that evaluates on it."""
    root = tmp_path_factory.mktemp("eval_predict")
    rng = np.random.default_rng(0)
    (root / "data" / "images").mkdir(parents=True)
    (root / "data" / "masks").mkdir()
    masks = {}
    for name, (h, w) in SIZES.items():
        # Smooth pictures (blocks of colour plus noise): the model's labels vary across the image.
        coarse = rng.integers(0, 256, (h // 8 + 1, w // 8 + 1, 3), dtype=np.uint8)
        image = np.kron(coarse, np.ones((8, 8, 1), np.uint8))[:h, :w]
        image = np.clip(image.astype(int) + rng.integers(-20, 21, image.shape), 0, 255).astype(np.uint8)
        Image.fromarray(image).save(root / "data" / "images" / f"{name}.png")
        mask = rng.integers(0, NUM_CLASSES, (h, w), dtype=np.uint8)
        mask[rng.random((h, w)) < 0.1] = 255
        Image.fromarray(mask).save(root / "data" / "masks" / f"{name}.png")
        masks[name] = mask
    torch.manual_seed(0)
    model = calibrate_norm_stats(atrous.create_model("deeplabv3_resnet18", num_classes=NUM_CLASSES))
    assert model.output_stride == 16 and all(h % 16 and w % 16 for h, w in SIZES.values())
    model.save_pretrained(root / "model")
    (root / "recipe.yaml").write_text(
        "model: {name: deeplabv3_resnet18}\n"
        f"data: {{dataset: folder, root: {root / 'data'}, val_split: train, options: {{num_classes: {NUM_CLASSES}}}, "
        "val_batch_size: 1, workers: 0}\n"
    )
    return root, masks


def _matrix(pairs) -> ConfusionMatrix:
    matrix = ConfusionMatrix(NUM_CLASSES)
    for prediction, mask in pairs:
        matrix.update(torch.as_tensor(prediction, dtype=torch.int64)[None], torch.as_tensor(mask).long()[None])
    return matrix


@pytest.mark.parametrize(
    "tta",
    [
        [],
        ["--scales", "0.75", "--flip"],
        ["--tile", "32", "--scales", "0.75", "--flip"],
        ["--crf"],
        ["--tile", "32", "--flip", "--crf", "deeplab_largefov", "--crf-iterations", "5"],
        ["--base-size", "24"],
        ["--base-size", "80", "--flip", "--crf"],
    ],
    ids=["single-scale", "scale-flip", "tiles-scale-flip", "crf", "tiles-flip-crf", "base-size", "base-flip-crf"],
)
def test_eval_scores_the_labels_predict_writes(case, tmp_path, monkeypatch, tta):
    root, masks = case
    out = tmp_path / "pred"
    predict = ["predict", str(root / "model"), str(root / "data" / "images"), "-o", str(out)]
    assert main([*predict, "--precision", "fp32", *tta]) == 0
    written = {name: np.array(Image.open(out / f"{name}.png")) for name in SIZES}
    assert all(labels.shape == SIZES[name] for name, labels in written.items())
    assert len({int(v) for labels in written.values() for v in np.unique(labels)}) > 1  # not one class everywhere

    # What eval scores, batch by batch: its labels and the masks they are scored against.
    scored = []
    update = ConfusionMatrix.update

    def spy(self, prediction, target):
        scored.append((prediction.cpu().numpy(), target.cpu().numpy()))
        return update(self, prediction, target)

    monkeypatch.setattr(ConfusionMatrix, "update", spy)
    metrics = tmp_path / "metrics.json"
    evaluate = ["eval", str(root / "model"), "-c", str(root / "recipe.yaml"), "--json", str(metrics)]
    assert main([*evaluate, "--precision", "fp32", *tta]) == 0
    monkeypatch.setattr(ConfusionMatrix, "update", update)

    assert len(scored) == len(SIZES)
    for prediction, target in scored:
        name = next(n for n, m in masks.items() if m.shape == target.shape[-2:] and np.array_equal(m, target[0]))
        assert np.array_equal(prediction[0], written[name]), name  # pixel for pixel

    # The dataset-level figures equal those computed from predict's files.
    expected = _matrix((written[name], masks[name]) for name in SIZES)
    assert torch.equal(_matrix((p[0], t[0]) for p, t in scored).matrix.cpu(), expected.matrix.cpu())
    record = json.loads(metrics.read_text())
    if "--crf" in tta:
        assert record["crf"]["preset"] == ("deeplab_largefov" if "deeplab_largefov" in tta else "deeplab_v2")
        assert record["crf"]["iterations"] == (5 if "--crf-iterations" in tta else 10)
    else:
        assert record["crf"] is None
    assert record["base_size"] == (int(tta[tta.index("--base-size") + 1]) if "--base-size" in tta else None)
    figures = expected.compute().as_dict([f"class_{i}" for i in range(NUM_CLASSES)])  # the folder dataset's names
    assert {key: record[key] for key in figures} == figures  # mIoU, accuracies, per class


def test_batched_evaluation_scores_the_labels_predict_writes(case, tmp_path, monkeypatch):
    """Same-sized images in batches of 3: eval runs the model on each image alone, as predict
    does (a batched convolution rounds differently, and near ties would flip)."""
    root, _ = case
    rng = np.random.default_rng(1)
    data = tmp_path / "data"
    (data / "images").mkdir(parents=True)
    (data / "masks").mkdir()
    masks = {}
    for i in range(3):
        image = rng.integers(0, 256, (37, 53, 3), dtype=np.uint8)
        Image.fromarray(image).save(data / "images" / f"{i}.png")
        masks[str(i)] = rng.integers(0, NUM_CLASSES, (37, 53), dtype=np.uint8)
        Image.fromarray(masks[str(i)]).save(data / "masks" / f"{i}.png")
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model: {name: deeplabv3_resnet18}\n"
        f"data: {{dataset: folder, root: {data}, val_split: train, options: {{num_classes: {NUM_CLASSES}}}, "
        "val_batch_size: 3, workers: 0}\n"
    )
    out = tmp_path / "pred"
    assert main(["predict", str(root / "model"), str(data / "images"), "-o", str(out), "--precision", "fp32"]) == 0
    written = [np.array(Image.open(out / f"{i}.png")) for i in range(3)]
    scored = []
    update = ConfusionMatrix.update

    def spy(self, prediction, target):
        scored.append(prediction.cpu().numpy())
        return update(self, prediction, target)

    monkeypatch.setattr(ConfusionMatrix, "update", spy)
    assert main(["eval", str(root / "model"), "-c", str(recipe), "--precision", "fp32"]) == 0
    monkeypatch.setattr(ConfusionMatrix, "update", update)
    assert [p.shape for p in scored] == [(1, 37, 53)] * 3  # one image at a time
    for prediction, labels in zip(scored, written, strict=True):
        assert np.array_equal(prediction[0], labels)


def test_a_models_base_size_is_the_default_of_predict_and_eval(case, tmp_path):
    """A model trained with data.base_size carries it: predict and eval show it the images at
    that side unless --base-size says otherwise; --tile needs --base-size 0."""
    root, _ = case
    model = atrous.load_model(root / "model")
    model.metadata = {**model.metadata, "base_size": 24}
    model.save_pretrained(tmp_path / "model")
    images = str(root / "data" / "images")
    runs = {}
    for name, extra in (("default", []), ("explicit", ["--base-size", "24"]), ("own", ["--base-size", "0"])):
        predict = ["predict", str(tmp_path / "model"), images, "-o", str(tmp_path / name), "--precision", "fp32"]
        assert main([*predict, *extra]) == 0
        runs[name] = {n: np.array(Image.open(tmp_path / name / f"{n}.png")) for n in SIZES}
    assert all(np.array_equal(runs["default"][n], runs["explicit"][n]) for n in SIZES)
    assert any(not np.array_equal(runs["default"][n], runs["own"][n]) for n in SIZES)
    metrics = tmp_path / "metrics.json"
    evaluate = ["eval", str(tmp_path / "model"), "-c", str(root / "recipe.yaml"), "--precision", "fp32"]
    assert main([*evaluate, "--json", str(metrics)]) == 0
    assert json.loads(metrics.read_text())["base_size"] == 24
    assert main([*evaluate, "--tile", "32"]) == 2
    assert main([*evaluate, "--tile", "32", "--base-size", "0"]) == 0
