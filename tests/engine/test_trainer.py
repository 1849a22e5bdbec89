import json
import os
import signal

import pytest
import torch

from atrous.engine.checkpoint import load_training_checkpoint
from atrous.engine.trainer import NonFiniteLossError, Trainer, TrainingInterrupted
from atrous.inference import load_trained_model


def _params(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_a_run_writes_its_folder(tiny_config, tmp_path):
    result = Trainer(tiny_config(), tmp_path / "run").run()
    run = tmp_path / "run"
    assert result.steps == 6
    for name in ("config.yaml", "metrics.jsonl", "last.pt", "best/model.safetensors", "best/config.json"):
        assert (run / name).is_file(), name
    for plot in ("loss.png", "miou.png", "per_class_iou.png", "confusion_matrix.png"):
        assert (run / "plots" / plot).is_file(), plot
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in records if r["kind"] == "val"] == [3, 6]
    assert 0.0 <= result.best_miou <= 1.0
    model = load_trained_model(run)
    assert model.metadata["class_names"][0] == "background"


def test_resume_ends_with_bit_identical_weights(tiny_config, tmp_path):
    """Stopped by SIGTERM at step 3 and resumed ≡ never stopped (CPU, bit for bit)."""
    config = tiny_config("train.eval_every=100", "train.checkpoint_every=100")
    straight = Trainer(config, tmp_path / "straight")
    straight.run()

    def stop_at_three(trainer, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    interrupted = Trainer(config, tmp_path / "resumed", callbacks=[stop_at_three])
    with pytest.raises(TrainingInterrupted) as info:
        interrupted.run()
    assert info.value.signum == signal.SIGTERM
    stopped = load_training_checkpoint(tmp_path / "resumed" / "last.pt")
    assert stopped["step"] == 3 and stopped["train_seconds"] > 0

    resumed = Trainer(config, tmp_path / "resumed", resume=True)
    assert resumed.step == 3
    resumed.run()
    # The model card's training time counts the steps before the stop too.
    assert load_training_checkpoint(tmp_path / "resumed" / "last.pt")["train_seconds"] > stopped["train_seconds"]
    a, b = _params(straight.model), _params(resumed.model)
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert straight.optimizer.state_dict()["state"].keys() == resumed.optimizer.state_dict()["state"].keys()
    assert resumed.scheduler.last_epoch == straight.scheduler.last_epoch == 6


def test_resume_from_a_checkpoint_written_before_its_steps_evaluation(tiny_config, tmp_path):
    """Killed (no checkpoint on the way out, as kill -9) after step 3's checkpoint and
    evaluation: last.pt holds the state from before that evaluation, and the resume skips
    the evaluation the log already has. Evaluating draws nothing from the global RNG, which
    dropout uses, so the resumed run still ends bit-identical to one that never stopped."""
    config = tiny_config("train.eval_every=3", "train.checkpoint_every=3")
    straight = Trainer(config, tmp_path / "straight")
    straight.run()

    class Killed(Exception):
        pass

    def killed_after_three(trainer, step):
        if step == 3:
            raise Killed

    with pytest.raises(Killed):
        Trainer(config, tmp_path / "killed", callbacks=[killed_after_three]).run()
    resumed = Trainer(config, tmp_path / "killed", resume=True)
    resumed.run()
    a, b = _params(straight.model), _params(resumed.model)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_a_resume_does_not_read_the_pretrained_backbone_again(tiny_config, tmp_path):
    import torchvision

    weights = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), weights)
    config = tiny_config(f"model.pretrained_backbone={weights}")

    def stop_at_three(trainer, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        Trainer(config, tmp_path / "run", callbacks=[stop_at_three]).run()
    weights.rename(tmp_path / "moved.pth")  # the weights are in last.pt: the resume needs no file
    assert Trainer(config, tmp_path / "run", resume=True).run().steps == 6


def test_a_checkpoint_resumed_in_another_folder_writes_its_best_model_there(tiny_config, tmp_path):
    config = tiny_config("train.eval_every=3", "train.checkpoint_every=3")

    def stop_at_three(trainer, step):
        if step == 3:
            os.kill(os.getpid(), signal.SIGTERM)

    with pytest.raises(TrainingInterrupted):
        Trainer(config, tmp_path / "first", callbacks=[stop_at_three]).run()
    assert (tmp_path / "first" / "best" / "config.json").is_file()
    checkpoint = torch.load(tmp_path / "first" / "last.pt", weights_only=False)
    checkpoint["best_score"] = 1.0  # a best no later evaluation beats: its best/ stays behind in first/
    (tmp_path / "copy").mkdir()
    torch.save(checkpoint, tmp_path / "copy" / "last.pt")
    Trainer(config, tmp_path / "copy", resume=True).run()
    assert (tmp_path / "copy" / "best" / "config.json").is_file()  # the run says "best model: copy/best"


def test_a_second_trainer_on_a_running_run_is_refused_before_it_touches_the_log(tiny_config, tmp_path):
    config = tiny_config()
    Trainer(config, tmp_path / "run").run()
    log = (tmp_path / "run" / "metrics.jsonl").read_bytes()
    running = Trainer(config, tmp_path / "run", resume=True)  # holds the folder from here on
    with pytest.raises(ValueError, match="is in use by another training run"):
        Trainer(config, tmp_path / "run", resume=True)
    assert (tmp_path / "run" / "metrics.jsonl").read_bytes() == log  # not rewound under the running one
    running.run()
    # A refused start in a new folder leaves no empty folder behind.
    with pytest.raises(TypeError, match="has no option"):
        Trainer(tiny_config("model.options={no_such_option: 1}"), tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config, tmp_path):
    before = None

    def poison_after_step_four(trainer, step):
        # Callbacks run after the step's checkpoint: last.pt now holds step 4.
        nonlocal before
        if step == 4:
            before = (tmp_path / "run" / "last.pt").read_bytes()
            with torch.no_grad():
                for p in trainer.model.classifier.parameters():
                    p.fill_(float("nan"))

    trainer = Trainer(tiny_config("train.checkpoint_every=2"), tmp_path / "run", callbacks=[poison_after_step_four])
    with pytest.raises(NonFiniteLossError, match=r"loss is nan at step 5.*last\.pt\) was not overwritten"):
        trainer.run()
    assert (tmp_path / "run" / "last.pt").read_bytes() == before
    checkpoint = load_training_checkpoint(tmp_path / "run" / "last.pt")
    assert checkpoint["step"] == 4
    assert all(torch.isfinite(v).all() for v in checkpoint["model"].values() if v.is_floating_point())


def test_the_card_counts_the_evaluations_that_chose_best(tiny_config, tmp_path):
    # steps 7, every 3: evaluations at 3, 6 and the last step; best/ is the best of them, so
    # its card warns that the validation figures also chose it.
    Trainer(tiny_config("train.steps=7"), tmp_path / "run").run()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if r["kind"] == "val"] == [3, 6, 7]
    saved = json.loads((tmp_path / "run" / "best" / "config.json").read_text())["metadata"]["card"]
    assert saved["evaluation"]["evaluations"] == 3
    card = (tmp_path / "run" / "best" / "README.md").read_text()
    assert "- Chosen as the best of up to 3 evaluations on `val`: the figures above picked this step" in card


def test_time_budget_stops_early_and_still_evaluates(tiny_config, tmp_path):
    result = Trainer(tiny_config("train.steps=1000", "train.max_time_s=1e-9"), tmp_path / "run").run()
    assert result.steps < 1000
    assert result.last_metrics is not None and result.last_metrics["step"] == result.steps
    assert load_training_checkpoint(tmp_path / "run" / "last.pt")["step"] == result.steps


def test_gradient_accumulation_and_aux_head(tiny_config, tmp_path):
    result = Trainer(
        tiny_config("train.grad_accum=2", "model.aux=true", "model.name=pspnet_resnet50", "train.steps=2"),
        tmp_path / "run",
    ).run()
    assert result.steps == 2


def test_seed_makes_runs_repeatable(tiny_config, tmp_path):
    a = Trainer(tiny_config("train.steps=2", "train.seed=7"), tmp_path / "a")
    a.run()
    b = Trainer(tiny_config("train.steps=2", "train.seed=7"), tmp_path / "b")
    b.run()
    for key, value in _params(a.model).items():
        assert torch.equal(value, _params(b.model)[key]), key


def test_num_classes_disagreeing_with_the_dataset(tiny_config, tmp_path):
    with pytest.raises(ValueError, match=r"model.num_classes=5 but dataset 'synthetic' has 3 classes"):
        Trainer(tiny_config("model.num_classes=5"), tmp_path / "run")


@pytest.mark.parametrize("key", ["steps", "eval_every", "checkpoint_every", "grad_accum"])
def test_intervals_must_be_positive(tiny_config, tmp_path, key):
    with pytest.raises(ValueError, match=rf"train\.{key} must be >= 1, got 0"):
        Trainer(tiny_config(f"train.{key}=0"), tmp_path / "run")


def test_sigint_also_checkpoints(tiny_config, tmp_path):
    def interrupt(trainer, step):
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    with pytest.raises(TrainingInterrupted, match=r"stopped by SIGINT; resume with --resume") as info:
        Trainer(tiny_config(), tmp_path / "run", callbacks=[interrupt]).run()
    assert info.value.signum == signal.SIGINT
    assert load_training_checkpoint(tmp_path / "run" / "last.pt")["step"] == 1
    assert signal.getsignal(signal.SIGINT) is before  # handlers restored


def test_channels_last_tensorboard_and_deterministic(tiny_config, tmp_path):
    try:
        trainer = Trainer(
            tiny_config(
                "train.steps=2",
                "train.channels_last=true",
                "train.tensorboard=true",
                "train.deterministic=true",
                "train.amp=bf16",
            ),
            tmp_path / "run",
        )
        assert torch.are_deterministic_algorithms_enabled()
        assert trainer.autocast_dtype == torch.bfloat16
        result = trainer.run()
    finally:
        torch.use_deterministic_algorithms(False)
    assert result.steps == 2
    assert trainer.model.backbone.conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert any((tmp_path / "run" / "tensorboard").iterdir())


def test_a_config_built_in_python_is_checked_before_any_work(tmp_path):
    from atrous.config import Config, ConfigError, TrainConfig
    from atrous.engine.optim import poly_lambda

    # poly_power <= 0 used to divide by zero at the last step, after all the training.
    with pytest.raises(ConfigError, match=r"train\.poly_power must be > 0, got 0\.0"):
        Trainer(Config(train=TrainConfig(poly_power=0.0)), tmp_path / "run")
    assert not (tmp_path / "run").exists()
    with pytest.raises(ValueError, match=r"train\.poly_power must be > 0"):
        poly_lambda(10, power=0.0)


def test_copy_paste_pastes_into_the_training_crops_and_checks_class_names(tiny_config, tmp_path, monkeypatch):
    """data.copy_paste: the training loader's crops go through CopyPasteDataset with the
    class names resolved against the dataset; an unknown name stops the run before it trains."""
    from atrous.data import copy_paste

    pasted = []
    getitem = copy_paste.CopyPasteDataset.__getitem__

    def spy(self, key):
        image, mask = getitem(self, key)
        pasted.append((self.classes.tolist(), self.probability))
        return image, mask

    monkeypatch.setattr(copy_paste.CopyPasteDataset, "__getitem__", spy)
    Trainer(tiny_config("data.copy_paste={probability: 1.0, classes: [circle]}"), tmp_path / "run").run()
    assert pasted == [([1], 1.0)] * (6 * 4)  # every crop of 6 steps × 4, "circle" resolved to class 1
    with pytest.raises(ValueError, match=r"copy_paste\.classes: no class 'cat'"):
        Trainer(tiny_config("data.copy_paste={probability: 0.5, classes: [cat]}"), tmp_path / "other").run()
    assert not (tmp_path / "other" / "last.pt").exists()


def test_base_size_trains_evaluates_and_travels_with_the_model(tiny_config, tmp_path, monkeypatch):
    """data.base_size: the training crops come from images brought to that shorter side, the
    run's evaluations show the network the images at it, and the saved model carries it."""
    import atrous.engine.tasks.semantic as semantic
    from atrous.data import transforms as transforms_module

    sizes = []
    resize = transforms_module._resize

    def spy(inpt, size):
        sizes.append(tuple(size))
        return resize(inpt, size)

    monkeypatch.setattr(transforms_module, "_resize", spy)
    seen = []
    evaluate = semantic.evaluate

    def evaluate_spy(*args, **kwargs):
        seen.append(kwargs.get("base_size"))
        return evaluate(*args, **kwargs)

    monkeypatch.setattr(semantic, "evaluate", evaluate_spy)
    config = tiny_config("data.base_size=48", "data.scale_range=[1, 1]", "data.crop_size=[40, 40]")
    Trainer(config, tmp_path / "run").run()
    assert sizes and set(sizes) == {(48, 48)}  # 32×32 shapes brought to the shorter side 48
    assert seen == [48, 48]  # both evaluations of the run
    model = load_trained_model(tmp_path / "run")
    assert model.metadata["base_size"] == 48
    assert "shorter side 48 px" in (tmp_path / "run" / "best" / "README.md").read_text()
