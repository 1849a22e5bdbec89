"""train.amp=auto: measured on the run's own model and shape, recorded, and kept on resume."""

from __future__ import annotations

import json

import pytest
import torch

from atrous.engine import amp as amp_module
from atrous.engine.amp import choose_training_precision, probe_shape, requested_precision, semantic_probe
from atrous.engine.checkpoint import load_training_checkpoint
from atrous.engine.tasks import semantic as trainer_module
from atrous.engine.trainer import Trainer
from atrous.runtime import PrecisionChoice

CPU = torch.device("cpu")


def test_probe_shape_keeps_small_runs_whole_and_caps_large_ones():
    assert probe_shape(16, 64, 64) == [16, 3, 64, 64]  # the demo: its own batch
    assert probe_shape(8, 352, 480) == [2, 3, 256, 256]
    assert probe_shape(1, 1024, 2048) == [1, 3, 256, 256]


@pytest.mark.parametrize(("amp", "precision"), [("off", "fp32"), (False, "fp32"), ("bf16", "bf16")])
def test_named_precisions_are_taken_as_they_are(amp, precision):
    assert requested_precision(amp, CPU) == PrecisionChoice(precision, "requested")


def test_bad_amp_values_are_refused():
    with pytest.raises(ValueError, match=r"train\.amp must be"):
        requested_precision("int8", CPU)
    with pytest.raises(ValueError, match="needs CUDA"):
        requested_precision("fp16", CPU)


def test_auto_measures_a_training_step_and_leaves_the_model_untouched():
    import atrous

    model = atrous.create_model("deeplabv3_resnet18", num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    shape = [2, 3, 64, 64]
    choice = choose_training_precision(
        "auto", CPU, model, semantic_probe(shape, 3, CPU, channels_last=True), shape, use_cache=False
    )
    assert choice.source == "measured" and set(choice.timings) == {"fp32", "bf16"}
    assert choice.precision in ("fp32", "bf16") and not choice.agreement  # no label test for training
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # BN statistics included: the probe ran on a copy
    assert all(p.grad is None for p in model.parameters())


def test_a_run_records_what_auto_chose_and_resume_keeps_it(tiny_config, tmp_path, monkeypatch):
    config = tiny_config("train.amp=auto", "train.steps=2", "train.eval_every=100", "train.checkpoint_every=1")
    monkeypatch.setattr(
        trainer_module, "choose_training_precision", lambda *a, **k: PrecisionChoice("bf16", "measured")
    )
    first = Trainer(config, tmp_path / "run")
    assert first.autocast_dtype is torch.bfloat16
    first.run()
    record = json.loads((tmp_path / "run" / "precision.json").read_text())
    assert record["amp"] == "auto" and record["precision"] == "bf16" and record["source"] == "measured"
    assert load_training_checkpoint(tmp_path / "run" / "last.pt")["precision"] == "bf16"

    # On a machine (or torch) where auto would now choose fp32, the resumed run stays in bf16.
    monkeypatch.setattr(
        trainer_module, "choose_training_precision", lambda *a, **k: PrecisionChoice("fp32", "measured")
    )
    resumed = Trainer(
        tiny_config("train.amp=auto", "train.steps=2", "train.eval_every=100"), tmp_path / "run", resume=True
    )
    assert resumed.precision_choice == PrecisionChoice("bf16", "checkpoint")
    assert resumed.autocast_dtype is torch.bfloat16


def test_instance_probe_gives_mask_rcnn_a_loss():
    import atrous

    model = atrous.create_model("maskrcnn_resnet18_fpn", num_classes=2, min_size=64, max_size=64).train()
    loss = amp_module.instance_probe([1, 3, 64, 64], CPU)(model)
    assert loss.ndim == 0 and torch.isfinite(loss)
    loss.backward()


def test_mask_rcnn_is_probed_at_the_side_it_resizes_images_to(monkeypatch):
    # Mask R-CNN resizes every image to min_size itself, so data.crop_size says nothing about
    # what it trains on (config refuses a non-default one for instance models).
    import atrous
    from atrous.config import load_config
    from atrous.engine.distributed import DistInfo
    from atrous.engine.tasks import instance as instance_module

    seen = []
    monkeypatch.setattr(
        instance_module, "choose_training_precision", lambda amp, device, model, probe, shape: seen.append(shape)
    )
    config = load_config(None, ["model.name=maskrcnn_resnet18_fpn", "data.batch_size=2"])
    task = instance_module.InstanceTask(config, CPU, DistInfo())
    task.choose_precision(atrous.create_model("maskrcnn_resnet18_fpn", num_classes=2, min_size=96, max_size=128))
    assert seen == [probe_shape(2, 96, 96)] == [[2, 3, 96, 96]]
