"""Instance models through the same CLI: train, eval and predict follow from the model."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from atrous.cli import main
from atrous.config import load_config
from atrous.engine.trainer import Trainer as InstanceTrainer


def _overrides(root, steps=3):
    return [
        "model.name=maskrcnn_resnet18_fpn",
        "model.options={min_size: 64, max_size: 64, anchor_sizes: [8, 16, 32, 64, 128], box_score_thresh: 0.0}",
        "data.dataset=dsb2018_nuclei",
        f"data.root={root}",
        "data.batch_size=2",
        "data.val_batch_size=2",
        "data.workers=0",
        "data.vflip=0.5",
        "data.scale_range=[1.0, 1.0]",
        f"train.steps={steps}",
        f"train.eval_every={steps}",
        "train.log_every=1",
        "train.progress=false",
        "train.lr=0.001",
        "train.warmup_steps=1",
    ]


def test_train_eval_predict(nuclei_root, tmp_path, capsys):
    run = tmp_path / "run"
    args = [a for o in _overrides(nuclei_root) for a in ("--set", o)]
    assert main(["train", *args, "--run-dir", str(run)]) == 0
    assert "best validation mask AP" in capsys.readouterr().out
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["kind"] == "train"]
    assert [r["step"] for r in train] == [1, 2, 3]
    assert all(np.isfinite(r["loss_mask"]) for r in train)
    val = [r for r in records if r["kind"] == "val"]
    assert len(val) == 1 and {"mask_AP", "mask_AP50", "box_AP75"} <= set(val[0])
    assert (run / "best" / "config.json").is_file() and (run / "last.pt").is_file()

    assert main(["eval", str(run), "--json", str(tmp_path / "m.json")]) == 0
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["mask_AP"] == pytest.approx(val[0]["mask_AP"], abs=1e-6)  # the same model, the same data

    image = next(nuclei_root.glob("*/images/*.png"))
    out = tmp_path / "pred"
    flags = ["--score-threshold", "0", "--masks", "--coco", str(tmp_path / "r.json")]
    assert main(["predict", str(run), str(image), "-o", str(out), *flags]) == 0
    overlay = np.asarray(Image.open(out / f"{image.stem}_overlay.png"))
    assert overlay.shape == (64, 64, 3)
    coco = json.loads((tmp_path / "r.json").read_text())
    assert coco["categories"] == [{"id": 1, "name": "nucleus"}]
    assert len(list((out / f"{image.stem}_masks").glob("*.png"))) == len(coco["annotations"]) > 0
    first = coco["annotations"][0]
    assert set(first) == {"id", "image_id", "category_id", "bbox", "score", "segmentation", "area", "iscrowd"}
    from pycocotools.coco import COCO

    ground_truth = COCO()
    ground_truth.dataset = coco
    ground_truth.createIndex()  # a valid COCO file: pycocotools indexes it
    assert len(ground_truth.getAnnIds()) == len(coco["annotations"])


@pytest.mark.parametrize(("jitter", "strength"), [("true", 0.2), ("0.35", 0.35), ("false", 0.0)])
def test_data_jitter_reaches_the_instance_training_transforms(nuclei_root, tmp_path, jitter, strength):
    """An instance run's config recorded jitter: true while its transforms had none."""
    config = load_config(None, [*_overrides(nuclei_root), f"data.jitter={jitter}", "train.amp=off"])
    trainer = InstanceTrainer(config, tmp_path / "run")
    transforms = trainer.train_loader.dataset.transforms
    assert transforms.jitter == strength and transforms.vflip == 0.5


def test_resume_continues_bit_exact(nuclei_root, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the same summation order in both runs
    # fp32: train.amp=auto would first time bf16 against fp32 on Mask R-CNN, a third of this
    # test's time; that a resumed run keeps its precision is tests/engine/test_amp.py's test.
    overrides = [*_overrides(nuclei_root, steps=4), "train.amp=off"]
    try:
        full = InstanceTrainer(load_config(None, overrides), tmp_path / "full").run()

        class Stop(Exception):
            pass

        def stop_at_2(trainer, step):
            if step == 2:
                trainer.save_checkpoint()
                raise Stop

        config = load_config(None, overrides)
        with pytest.raises(Stop):
            InstanceTrainer(config, tmp_path / "part", callbacks=[stop_at_2]).run()
        resumed = InstanceTrainer(config, tmp_path / "part", resume=True).run()
    finally:
        torch.set_num_threads(threads)
    loss = {r["step"]: r["loss"] for r in full.history if r["kind"] == "train"}
    assert [r["loss"] for r in resumed.history if r["kind"] == "train"] == [loss[3], loss[4]]


def test_instance_and_semantic_options_do_not_mix(nuclei_root, tmp_path, capsys):
    args = [a for o in _overrides(nuclei_root, steps=1) for a in ("--set", o)]
    assert main(["train", *args, "--run-dir", str(tmp_path / "run")]) == 0
    capsys.readouterr()
    assert main(["eval", str(tmp_path / "run"), "--flip"]) == 2
    assert "apply to semantic models" in capsys.readouterr().err
    image = next(nuclei_root.glob("*/images/*.png"))
    assert main(["predict", str(tmp_path / "run"), str(image), "-o", str(tmp_path / "p"), "--probabilities"]) == 2
    # a semantic model refuses the instance outputs
    bad = ["--set", "model.name=deeplabv3_resnet18", "--set", f"data.root={nuclei_root}"]
    assert main(["train", *args, *bad, "--run-dir", str(tmp_path / "bad")]) == 2
