"""No writing command overwrites or loses a file the user gave or already had.

Each test feeds one way an output could land on an input, on an existing file, on another
output, or into a folder it cannot write, and checks the one-line refusal (exit code 2)
comes before any work and leaves every file as it was. One untrained model, saved the way
training saves it (RUN/config.yaml, RUN/best/, RUN/last.pt), serves every test.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atrous.cli import main

PREDICT = ["--precision", "fp32", "--device", "cpu"]


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A run folder: the recipe, the best model (untrained: only the files matter) and a checkpoint."""
    import atrous
    from atrous.config import load_config

    run = tmp_path_factory.mktemp("safety") / "run"
    model = atrous.create_model("deeplabv3_resnet18", num_classes=3)
    model.save_pretrained(run / "best", metadata={"class_names": ["a", "b", "c"]})
    overrides = [
        "model.name=deeplabv3_resnet18",
        "data.dataset=synthetic",
        "data.options={size: 32, num_classes: 3}",
        "data.val_options={num_samples: 2, seed: 1}",
        "data.val_batch_size=2",
        "data.workers=0",
    ]
    load_config(None, overrides).save(run / "config.yaml")
    (run / "last.pt").write_bytes(b"the user's checkpoint")
    return run


def _image(path: Path, size=(24, 32), seed=0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (*size, 3), dtype=np.uint8)).save(path)
    return path


def _mask(path: Path, size=(40, 40)) -> Path:
    Image.fromarray(np.full(size, 255, np.uint8)).save(path)
    return path


def _snapshot(*folders: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def _one_line_error(capsys, command: str, *needles: str) -> str:
    err = capsys.readouterr().err.strip()
    lines = [line for line in err.splitlines() if f"atrous {command}: error:" in line]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


@pytest.fixture
def no_model_load(monkeypatch):
    """Fails the test if the model is loaded: refusals come before any work."""
    import atrous.inference

    def refuse(*args, **kwargs):
        raise AssertionError("the model was loaded before the outputs were checked")

    monkeypatch.setattr(atrous.inference, "load_inference_model", refuse)
    monkeypatch.setattr(atrous.inference, "load_trained_model", refuse)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


# --- rule 1: an output never overwrites an input ----------------------------------------


@pytest.mark.parametrize("route", ["same", "dotdot", "symlink", "relative"])
def test_predict_never_writes_over_its_input_images(run, tmp_path, route, capsys, monkeypatch, no_model_load):
    photos = tmp_path / "photos"
    _image(photos / "a.png")
    _image(photos / "b.jpg")
    out = {"same": photos, "dotdot": photos / ".." / "photos", "symlink": tmp_path / "link"}.get(route, Path("photos"))
    if route == "symlink":
        (tmp_path / "link").symlink_to(photos)
    monkeypatch.chdir(tmp_path)
    before = _snapshot(photos)
    for extra in ([], ["--overwrite"]):  # --overwrite never lifts this rule
        assert main(["predict", str(run), str(photos), "-o", str(out), *PREDICT, *extra]) == 2
        _one_line_error(capsys, "predict", "a.png", "would overwrite the input image")
    assert _snapshot(photos) == before


def test_predict_writes_no_label_maps_among_its_photos(run, tmp_path, capsys, no_model_load):
    # JPEG photos: no output would replace one, but x.png beside x.jpg would be read as a photo
    # by the next `predict photos/`, so the photos' own folder is refused as -o too.
    photos = tmp_path / "photos"
    _image(photos / "x.jpg")
    before = _snapshot(photos)
    assert main(["predict", str(run), str(photos), "-o", str(photos), *PREDICT]) == 2
    _one_line_error(capsys, "predict", f"-o {photos} is the folder of the input image {photos / 'x.jpg'}")
    assert _snapshot(photos) == before


def test_predict_checks_its_options_before_loading_the_model(run, tmp_path, capsys, no_model_load):
    image = _image(tmp_path / "a.png")
    assert main(["predict", str(run), str(image), "-o", str(tmp_path / "out"), *PREDICT, "--masks"]) == 2
    _one_line_error(capsys, "predict", "--masks, --coco and --score-threshold are for instance models")


def test_portrait_never_writes_over_its_photo_or_mask(tmp_path, capsys):
    photo = _image(tmp_path / "in.png", (40, 40))
    mask = _mask(tmp_path / "mask.png")
    (tmp_path / "alias.png").symlink_to(mask)
    before = _snapshot(tmp_path)
    cases = {
        str(photo): "input photo",
        str(tmp_path / "sub" / ".." / "in.png"): "input photo",
        str(tmp_path / "alias.png"): "--mask",
    }
    for output, what in cases.items():
        argv = ["portrait", str(photo), output, "--mask", str(mask), "--overwrite"]
        assert main(argv) == 2
        _one_line_error(capsys, "portrait", output, f"would overwrite the {what}")
    assert _snapshot(tmp_path) == before


@pytest.mark.parametrize("target", ["best/model.safetensors", "best/config.json", "last.pt", "config.yaml"])
def test_export_never_writes_over_the_models_files(run, target, capsys, no_model_load):
    before = _snapshot(run)
    for model in (run, run / "best", run / "last.pt"):
        assert main(["export", str(model), "-o", str(run / target), "--overwrite"]) == 2
        _one_line_error(capsys, "export", str(run / target), "would overwrite the model")
    assert _snapshot(run) == before


@pytest.mark.parametrize("target", ["config.yaml", "best/config.json", "best/README.md", "last.pt"])
def test_eval_json_never_writes_over_the_model_or_config(run, target, capsys, no_model_load):
    before = _snapshot(run)
    assert main(["eval", str(run), "--json", str(run / target), "--overwrite"]) == 2
    _one_line_error(capsys, "eval", str(run / target), "would overwrite")
    assert _snapshot(run) == before


def test_quantize_never_replaces_a_folder_holding_an_input(run, tmp_path, capsys):
    pytest.importorskip("openvino")
    config = tmp_path / "int8" / "recipe.yaml"
    config.parent.mkdir()
    config.write_text((run / "config.yaml").read_text())
    (config.parent / "int8.json").write_text("{}")  # looks like an int8 folder: --overwrite would replace it
    assert main(["quantize", str(run), "--config", str(config), "-o", str(config.parent), "--overwrite"]) == 2
    _one_line_error(capsys, "quantize", "recipe.yaml")
    assert config.is_file()


def test_train_never_writes_over_a_recipe_or_weights_in_its_run_folder(run, tmp_path, capsys):
    # The recipe kept in the folder the run is pointed at, and weights to start from in its best/.
    project = tmp_path / "project"
    (project / "best").mkdir(parents=True)
    recipe = project / "config.yaml"
    recipe.write_text("# my recipe, with its comments\n" + (run / "config.yaml").read_text())
    (project / "best" / "model.safetensors").write_bytes((run / "best" / "model.safetensors").read_bytes())
    before = _snapshot(project)
    argv = ["train", "-c", str(recipe), "--run-dir", str(project), "--set", "train.steps=1"]
    assert main([*argv, "--set", f"model.checkpoint_path={project / 'best' / 'model.safetensors'}"]) == 2
    _one_line_error(capsys, "train", str(project), "config.yaml, best, which a new run would overwrite")
    assert _snapshot(project) == before


# --- rule 2: an existing output is replaced only with --overwrite -----------------------


def test_predict_refuses_existing_outputs_until_overwrite(run, tmp_path, capsys):
    image = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    assert main(["predict", str(run), str(image), "-o", str(out), *PREDICT]) == 0
    (out / "a.png").write_bytes(b"the user's own file")
    assert main(["predict", str(run), str(image), "-o", str(out), *PREDICT]) == 2
    _one_line_error(capsys, "predict", str(out / "a.png"), "already exists", "pass --overwrite to replace")
    assert (out / "a.png").read_bytes() == b"the user's own file"
    assert main(["predict", str(run), str(image), "-o", str(out), *PREDICT, "--overwrite"]) == 0
    assert Image.open(out / "a.png").mode == "P"


def test_portrait_refuses_an_existing_output_until_overwrite(tmp_path, capsys):
    photo = _image(tmp_path / "in.png", (40, 40))
    mask = _mask(tmp_path / "mask.png")
    out = tmp_path / "out.png"
    out.write_bytes(b"keep me")
    argv = ["portrait", str(photo), str(out), "--mask", str(mask), "--blur", "3"]
    assert main(argv) == 2
    _one_line_error(capsys, "portrait", str(out), "pass --overwrite to replace")
    assert out.read_bytes() == b"keep me"
    assert main([*argv, "--overwrite"]) == 0
    assert Image.open(out).size == (40, 40)


def test_export_refuses_an_earlier_export_until_overwrite(run, capsys, monkeypatch):
    import atrous.export
    from atrous.utils.atomic import atomic_write_text

    def fake_export(model, path, **kwargs):  # the real one takes a minute; only the path matters here
        return atomic_write_text(path, "exported")

    monkeypatch.setattr(atrous.export, "export_model", fake_export)
    default = run / "model.onnx"
    default.write_text("an earlier export")
    try:
        assert main(["export", str(run)]) == 2
        _one_line_error(capsys, "export", str(default), "pass --overwrite to replace")
        assert default.read_text() == "an earlier export"
        assert main(["export", str(run), "--overwrite"]) == 0
        assert default.read_text() == "exported"
    finally:
        default.unlink()


def test_eval_json_refuses_an_existing_file_until_overwrite(run, tmp_path, capsys):
    target = tmp_path / "metrics.json"
    target.write_text("earlier figures")
    assert main(["eval", str(run), "--json", str(target), "--device", "cpu", "--precision", "fp32"]) == 2
    _one_line_error(capsys, "eval", str(target), "pass --overwrite to replace")
    assert target.read_text() == "earlier figures"
    assert main(["eval", str(run), "--json", str(target), "--device", "cpu", "--precision", "fp32", "--overwrite"]) == 0
    assert 0 <= json.loads(target.read_text())["miou"] <= 1


def test_every_writing_command_documents_overwrite(capsys):
    for command in ("predict", "portrait", "export", "eval", "quantize"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        assert "--overwrite" in capsys.readouterr().out, command


# --- rule 3: outputs never collide -------------------------------------------------------


def test_predict_gives_colliding_inputs_distinct_names(run, tmp_path, capsys):
    a = _image(tmp_path / "a" / "x.png", seed=1)
    b = _image(tmp_path / "b" / "x.jpg", seed=2)
    c = _image(tmp_path / "c" / "X.png", seed=3)  # one file with x.png on a case-insensitive disk
    d = _image(tmp_path / "c" / "x_overlay.png", seed=4)  # its label map would be x's overlay
    out = tmp_path / "out"
    assert main(["predict", str(run), str(a), str(b), str(c), str(d), "-o", str(out), *PREDICT]) == 0
    err = capsys.readouterr().err
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        f"{stem}{suffix}" for stem in ("x", "x-2", "X-3", "x_overlay-2") for suffix in (".png", "_overlay.png")
    )
    for path, name in ((b, "x-2"), (c, "X-3"), (d, "x_overlay-2")):
        assert f"{path} is written as {out / name}" in err
    assert str(a) + " is written" not in err


def test_predict_runs_a_file_given_twice_once(run, tmp_path, capsys, monkeypatch):
    image = _image(tmp_path / "photos" / "a.png")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "out"
    argv = ["predict", str(run), "photos", str(image), "photos/*.png", "-o", str(out), *PREDICT]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert "given more than once" in captured.err and captured.out.count("-> ") == 1
    assert sorted(p.name for p in out.iterdir()) == ["a.png", "a_overlay.png"]


def test_predict_coco_must_not_be_an_input_or_a_folder(tmp_path, capsys, monkeypatch):
    """--coco is checked like the other outputs (an instance model's plan, read from its config)."""
    import atrous.cli.predict as predict

    monkeypatch.setattr(predict, "_task_before_loading", lambda model, precision: "instance")
    image = _image(tmp_path / "a.png")
    for coco, message in ((image, "would overwrite the input image"), (tmp_path, "is a folder")):
        assert (
            main(["predict", "torchvision:fcn_resnet50", str(image), "-o", str(tmp_path / "o"), "--coco", str(coco)])
            == 2
        )
        _one_line_error(capsys, "predict", str(coco), message)


# --- folders that cannot be written: one line, before the work --------------------------


def test_outputs_under_a_file_are_one_line_errors(run, tmp_path, capsys, no_model_load):
    blocker = tmp_path / "somefile.txt"
    blocker.write_text("not a folder")
    photo = _image(tmp_path / "in.png", (40, 40))
    cases = {
        "predict": ["predict", str(run), str(photo), "-o", str(blocker / "out"), *PREDICT],
        "portrait": ["portrait", str(photo), str(blocker / "p.png"), "--mask", str(photo)],
        "export": ["export", str(run), "-o", str(blocker / "m.onnx")],
        "eval": ["eval", str(run), "--json", str(blocker / "m.json")],
        "quantize": ["quantize", str(run), "-o", str(blocker / "int8")],
    }
    for command, argv in cases.items():
        assert main(argv) == 2, command
        _one_line_error(capsys, command, str(blocker), "is a file, not a folder")
    assert main(["predict", str(run), str(photo), "-o", str(blocker), *PREDICT]) == 2
    _one_line_error(capsys, "predict", f"-o {blocker} is a file, not a folder")


def test_a_read_only_output_folder_is_one_line(run, tmp_path, capsys, no_model_load):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o555)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: a 0o555 folder stays writable (the under-a-file test covers this)")
        photo = _image(tmp_path / "in.png", (40, 40))
        for command, argv in {
            "predict": ["predict", str(run), str(photo), "-o", str(locked / "out"), *PREDICT],
            "portrait": ["portrait", str(photo), str(locked / "p.png"), "--mask", str(photo)],
            "export": ["export", str(run), "-o", str(locked / "m.onnx")],
            "eval": ["eval", str(run), "--json", str(locked / "m.json")],
        }.items():
            assert main(argv) == 2, command
            _one_line_error(capsys, command, str(locked), "not writable")
    finally:
        locked.chmod(0o755)


def test_an_unwritable_folder_is_refused_for_root_too(run, tmp_path, capsys, monkeypatch, no_model_load):
    """What os.access says for a 0o555 folder to a user, or a read-only file system to root."""
    import atrous.cli.outputs as outputs

    monkeypatch.setattr(outputs.os, "access", lambda path, mode, **kwargs: False)
    photo = _image(tmp_path / "in.png", (40, 40))
    assert main(["predict", str(run), str(photo), "-o", str(tmp_path / "out"), *PREDICT]) == 2
    _one_line_error(capsys, "predict", f"cannot write -o {tmp_path / 'out'}: {tmp_path} is not writable")


def test_eval_prints_the_metrics_before_a_failed_json_write(run, tmp_path, capsys, monkeypatch):
    import atrous.utils.atomic

    def full_disk(path, text):
        raise OSError(28, "No space left on device", f"{path}.tmp")

    monkeypatch.setattr(atrous.utils.atomic, "atomic_write_text", full_disk)
    target = tmp_path / "m.json"
    assert main(["eval", str(run), "--json", str(target), "--device", "cpu", "--precision", "fp32"]) == 2
    captured = capsys.readouterr()
    assert "mIoU" in captured.out  # the figures are on screen: nothing is lost
    assert f"{target}: No space left on device" in captured.err and ".tmp" not in captured.err


# --- temporary files: a killed run's are removed, a failing write leaves none -----------


def test_stale_temporary_files_are_removed_at_start(run, tmp_path, capsys):
    pid = _dead_pid()
    image = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    out.mkdir()
    stale = out / f".a.png.atrous-{pid}-abcd1234.tmp"
    stale.write_bytes(b"half a png")
    live = out / f".b.png.atrous-{os.getpid()}-abcd1234.tmp"  # a running writer's: never touched
    live.write_bytes(b"in progress")
    assert main(["predict", str(run), str(image), "-o", str(out), *PREDICT]) == 0
    assert not stale.exists() and live.exists()
    assert "removed 1 temporary file" in capsys.readouterr().err

    photo = _image(tmp_path / "p" / "in.png", (40, 40))
    stale = photo.parent / f".out.png.atrous-{pid}-x.tmp"
    stale.write_bytes(b"half")
    mask = _mask(photo.parent / "mask.png")
    assert main(["portrait", str(photo), str(photo.parent / "out.png"), "--mask", str(mask), "--blur", "3"]) == 0
    assert not stale.exists()


def test_a_failing_save_leaves_no_temporary_file_and_names_the_output(run, tmp_path, capsys, monkeypatch):
    image = _image(tmp_path / "in" / "a.png")
    out = tmp_path / "out"
    real_save = Image.Image.save

    def full_disk(self, fp, *args, **kwargs):
        if "_overlay" in str(fp):
            raise OSError(28, "No space left on device", str(fp))
        return real_save(self, fp, *args, **kwargs)

    monkeypatch.setattr(Image.Image, "save", full_disk)
    assert main(["predict", str(run), str(image), "-o", str(out), *PREDICT]) == 2
    line = _one_line_error(capsys, "predict", f"{out / 'a_overlay.png'}: No space left on device")
    assert ".tmp" not in line
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


# --- an image too large for --memory is skipped, the rest go on --------------------------


def test_predict_skips_an_image_too_large_for_the_memory_budget(run, tmp_path, capsys):
    small = _image(tmp_path / "in" / "small.png", (16, 16))
    large = _image(tmp_path / "in" / "large.png", (200, 200))  # needs tiles smaller than 64
    out = tmp_path / "out"
    argv = ["predict", str(run), str(large), str(small), "-o", str(out), "--memory", "1MiB", *PREDICT]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert f"skipped {large}" in err and "--memory 1MiB" in err and "1 of 2 images failed" in err
    assert "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["small.png", "small_overlay.png"]


def test_the_headline_case_through_the_real_command(run, tmp_path):
    """`atrous predict RUN photos/ -o photos/` once replaced the photos with label maps."""
    photos = tmp_path / "photos"
    _image(photos / "a.png")
    before = _snapshot(photos)
    argv = [sys.executable, "-m", "atrous", "predict", str(run), str(photos), "-o", str(photos), *PREDICT]
    result = subprocess.run(argv, capture_output=True, text=True)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip() == (
        f"atrous predict: error: {photos / 'a.png'} would overwrite the input image {photos / 'a.png'}; "
        "choose another output"
    )
    assert _snapshot(photos) == before
