import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from atrous.cli import main

TINY = [
    "--set",
    "model.name=deeplabv3_resnet18",
    "--set",
    "data.options={size: 32, num_classes: 3}",
    "--set",
    "data.train_options={num_samples: 8, seed: 0}",
    "--set",
    "data.val_options={num_samples: 4, seed: 1}",
    "--set",
    "data.crop_size=[32, 32]",
    "--set",
    "data.batch_size=4",
    "--set",
    "data.workers=0",
    "--set",
    "train.steps=2",
    "--set",
    "train.eval_every=2",
    "--set",
    "train.progress=false",
]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("cli") / "run"
    assert main(["train", "--run-dir", str(run), *TINY]) == 0
    return run


def test_train_writes_a_run_and_refuses_to_overwrite_it(trained_run, capsys):
    assert (trained_run / "best" / "model.safetensors").is_file()
    assert main(["train", "--run-dir", str(trained_run), *TINY]) == 2
    assert "already holds a run (last.pt): pass --resume" in capsys.readouterr().err


def test_the_best_model_carries_the_card_of_its_run(trained_run):
    from atrous.models.card import CARD_MARKER

    card = (trained_run / "best" / "README.md").read_text()
    assert card.splitlines()[0] == CARD_MARKER
    assert "# deeplabv3_resnet18 on synthetic" in card
    assert f"- command: `atrous train --run-dir {trained_run} --set model.name=deeplabv3_resnet18" in card
    assert "- data: `synthetic` split `train` (8 images), validated on `val` (4 images)" in card
    assert "- trained 2 of 2 steps in 0 min" in card and " CPU (" in card and "started from random weights" in card
    # The evaluation table is the run's own validation record at the saved step.
    records = [json.loads(line) for line in (trained_run / "metrics.jsonl").read_text().splitlines()]
    (val,) = [r for r in records if r["kind"] == "val"]
    assert "On `val` at step 2" in card and f"| **mIoU** | **{val['miou']:.3f}** |" in card
    for name, scores in val["per_class"].items():
        assert f"| {name} | {'—' if scores['iou'] is None else format(scores['iou'], '.3f')}" in card
    saved = json.loads((trained_run / "best" / "config.json").read_text())["metadata"]["card"]
    assert saved["training"]["seconds"] > 0 and saved["evaluation"]["metrics"]["miou"] == val["miou"]
    assert saved["evaluation"]["evaluations"] == 1 and "Chosen as the best" not in card  # one evaluation chose nothing
    # Bootstrap intervals over the 4 validation images, as atrous.metrics.bootstrap computes them.
    intervals = saved["evaluation"]["intervals"]
    assert intervals["resamples"] == 1000 and intervals["seed"] == 0
    low, high = intervals["miou"]
    assert 0 <= low <= high <= 1 and f"| **mIoU** | **{val['miou']:.3f}** | [{low:.3f}, {high:.3f}] |" in card


def test_resume_to_more_steps_is_refused_and_the_way_forward_works(trained_run, tmp_path, capsys):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    before = (run / "config.yaml").read_text()
    assert main(["train", "--run-dir", str(run), "--resume", *TINY, "--set", "train.steps=3"]) == 2
    err = capsys.readouterr().err
    assert "train.steps 2 → 3" in err and "model.checkpoint_path" in err and "\n" not in err.strip()
    assert (run / "config.yaml").read_text() == before  # still describes what ran
    longer = ["--set", "train.steps=3", "--set", f"model.checkpoint_path={run / 'last.pt'}"]
    assert main(["train", "--run-dir", str(tmp_path / "longer"), *TINY, *longer]) == 0
    assert "trained 3 steps" in capsys.readouterr().out


def test_eval_single_and_multi_scale_flip(trained_run, tmp_path, capsys):
    out = tmp_path / "m.json"
    assert main(["eval", str(trained_run), "--json", str(out)]) == 0
    single = json.loads(out.read_text())
    tta = ["--ms", "--flip", "--output-stride", "8"]
    assert main(["eval", str(trained_run), *tta, "--json", str(out), "--overwrite"]) == 0  # replaces the first
    multi = json.loads(out.read_text())
    assert multi["scales"] == [0.5, 0.75, 1.0, 1.25, 1.5, 1.75] and multi["flip"] is True
    assert multi["output_stride"] == 8
    for record in (single, multi):
        assert 0 <= record["miou"] <= 1
    assert "mIoU" in capsys.readouterr().out


def test_no_flip_overrides_the_recipes_eval_flip(trained_run, tmp_path):
    """A recipe with ``eval.flip: true`` (the person recipe's) can still be evaluated in one pass:
    ``--no-flip`` gives the plain evaluation's numbers, and without it the recipe's flip holds
    (the recorded setting is the one the evaluation ran with; before, --no-flip did not exist)."""
    plain, flipped, unflipped = (tmp_path / f"{name}.json" for name in ("plain", "flipped", "unflipped"))
    assert main(["eval", str(trained_run), "--json", str(plain)]) == 0
    recipe_flip = ["--set", "eval.flip=true"]
    assert main(["eval", str(trained_run), *recipe_flip, "--json", str(flipped)]) == 0
    assert main(["eval", str(trained_run), *recipe_flip, "--no-flip", "--json", str(unflipped)]) == 0
    plain, flipped, unflipped = (json.loads(p.read_text()) for p in (plain, flipped, unflipped))
    assert plain["flip"] is False and flipped["flip"] is True and unflipped["flip"] is False
    assert unflipped["miou"] == plain["miou"] and unflipped["per_class"] == plain["per_class"]


def test_tile_0_overrides_the_recipes_eval_tile(trained_run, tmp_path, capsys):
    """``--tile 0`` evaluates whole images under a recipe with ``eval.tile`` (the membrane
    recipe's), as ``--no-flip`` undoes ``eval.flip``; before, ``args.tile or config.eval.tile``
    kept the recipe's tile. A negative tile is refused by the parser, naming the option."""
    plain, tiled, whole = (tmp_path / f"{name}.json" for name in ("plain", "tiled", "whole"))
    assert main(["eval", str(trained_run), "--json", str(plain)]) == 0
    recipe_tile = ["--set", "eval.tile=16"]
    assert main(["eval", str(trained_run), *recipe_tile, "--json", str(tiled)]) == 0
    assert main(["eval", str(trained_run), *recipe_tile, "--tile", "0", "--json", str(whole)]) == 0
    plain, tiled, whole = (json.loads(p.read_text()) for p in (plain, tiled, whole))
    assert plain["tile"] is None and tiled["tile"] == 16 and whole["tile"] is None
    assert whole["miou"] == plain["miou"] and whole["per_class"] == plain["per_class"]
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", str(trained_run), "--tile", "-1"])
    assert exit_info.value.code == 2 and "--tile" in capsys.readouterr().err


def test_predict_writes_palette_png_and_overlay(trained_run, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a.png", "b.jpg"):
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (37, 45, 3), dtype=np.uint8)).save(images / name)
    out = tmp_path / "pred"
    assert main(["predict", str(trained_run), str(images), str(images / "*.png"), "--out", str(out)]) == 0
    label = Image.open(out / "a.png")
    assert label.mode == "P" and label.size == (45, 37)
    assert set(np.unique(np.array(label))) <= {0, 1, 2}
    assert Image.open(out / "b_overlay.png").size == (45, 37)


def test_predict_skips_an_unreadable_file_and_writes_probabilities(trained_run, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(images / "good.png")
    (images / "broken.png").write_bytes(b"not a png")
    out = tmp_path / "pred"
    code = main(["predict", str(trained_run), str(images), "-o", str(out), "--probabilities", "--precision", "fp32"])
    assert code == 2  # one input failed
    err = capsys.readouterr().err
    assert "skipped" in err and "broken.png" in err and "1 of 2 images failed" in err
    probs = np.load(out / "good_probs.npy")
    assert probs.shape == (3, 20, 30) and np.allclose(probs.sum(0), 1.0, atol=1e-5)
    assert np.array_equal(probs.argmax(0), np.array(Image.open(out / "good.png")))
    assert not (out / "broken.png").exists()
    assert not list(out.glob(".*.tmp"))  # nothing half-written


def test_predict_bad_inputs_exit_2(trained_run, tmp_path, capsys):
    assert main(["predict", str(trained_run), str(tmp_path / "nope.png")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["predict", str(trained_run), str(tmp_path / "*.png")]) == 2
    assert "matches no file" in capsys.readouterr().err
    assert main(["predict", str(tmp_path), str(tmp_path)]) == 2
    capsys.readouterr()
    image = tmp_path / "a.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(image)
    assert main(["predict", str(trained_run), str(image), "-o", str(tmp_path / "o"), "--score-threshold", "-3"]) == 2
    assert "--score-threshold are for instance models; this model is a semantic one" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
    assert main(["eval", str(tmp_path / "no_run")]) == 2
    assert f"model {tmp_path / 'no_run'} does not exist" in capsys.readouterr().err


def test_train_names_what_is_wrong_with_its_run_dir_or_recipe(tmp_path, capsys):
    afile = tmp_path / "a.png"
    afile.write_bytes(b"x")
    assert main(["train", "--run-dir", str(afile), "--set", "train.steps=1"]) == 2
    assert f"{afile} is a file, not a run folder" in capsys.readouterr().err
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("train: [1]\n")
    assert main(["train", "-c", str(recipe), "--run-dir", str(tmp_path / "r"), "--set", "train.steps=1"]) == 2
    assert f"{recipe}: section 'train' must be a mapping of keys, got [1]" in capsys.readouterr().err
    recipe.write_text("model:\ntrain:\n  steps: 0\n")  # an empty section is an empty mapping
    assert main(["train", "-c", str(recipe), "--run-dir", str(tmp_path / "r")]) == 2
    assert "train.steps must be >= 1, got 0" in capsys.readouterr().err
    assert afile.read_bytes() == b"x" and not (tmp_path / "r").exists()


def test_models_table_with_forward(capsys):
    assert main(["models", "pspnet*"]) == 0
    out = capsys.readouterr().out
    assert "pspnet_resnet50" in out and "deeplab" not in out
    assert main(["models", "*resnet18", "--size", "33"]) == 0
    assert "1×21×33×33" in capsys.readouterr().out


def test_running_out_of_memory_is_one_line_and_exit_code_1(capsys, monkeypatch):
    import atrous.cli.models

    def exhausted(args):
        raise MemoryError()

    monkeypatch.setattr(atrous.cli.models, "run", exhausted)
    assert main(["models"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "atrous models: error: out of memory: the machine ran out of memory"


def test_bad_usage_is_one_line_and_exit_code_2(capsys):
    assert main(["train", "--set", "train.lrr=1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("atrous train: error: unknown key train.lrr.") and "\n" not in err
    assert main(["models", "nothing*"]) == 2


def test_doctor_reports_a_folder_dataset(tmp_path, capsys):
    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
    for i in range(3):
        Image.fromarray(np.zeros((8, 10, 3), dtype=np.uint8)).save(tmp_path / "images" / f"{i}.png")
        mask = np.zeros((8, 10), dtype=np.uint8)
        mask[:, 5:] = 255  # a 0/255 binary mask, as many tools export them
        Image.fromarray(mask).save(tmp_path / "masks" / f"{i}.png")
    assert main(["doctor", "folder", "--root", str(tmp_path), "-o", "num_classes=2"]) == 3  # problems found: exit 3
    out = capsys.readouterr().out
    assert "3" in out and "label_map" in out  # 0/255 masks: suggests mapping 255 to class 1
    assert main(["doctor", "folder", "--root", str(tmp_path)]) == 2
    assert "the folder dataset needs num_classes" in capsys.readouterr().err


def test_doctor_unknown_dataset(capsys):
    assert main(["doctor", "camvd"]) == 2
    assert "Did you mean: camvid" in capsys.readouterr().err


def test_console_script_entry_point():
    result = subprocess.run([sys.executable, "-m", "atrous", "models", "fcn*"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert "fcn_resnet101" in result.stdout


def test_demo_never_deletes_a_folder_it_did_not_write(tmp_path, capsys):
    run = tmp_path / "my_run"
    run.mkdir()
    (run / "config.yaml").write_text("model:\n  name: unet\ndata:\n  dataset: folder\n")
    (run / "last.pt").write_bytes(b"weeks of training")
    assert main(["demo", "--run-dir", str(run)]) == 2
    assert "no earlier demo wrote" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == b"weeks of training"
    # Nor a run of the demo's own model on synthetic data (the config's defaults), marker-less.
    (run / "config.yaml").write_text("model:\n  name: deeplabv3plus_resnet18\ndata:\n  dataset: synthetic\n")
    assert main(["demo", "--run-dir", str(run), "--set", "data.options.size=abc"]) == 2
    assert "no earlier demo wrote" in capsys.readouterr().err
    assert (run / "last.pt").read_bytes() == b"weeks of training"
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert main(["demo", "--run-dir", str(afile)]) == 2
    assert afile.read_text() == "x"


def test_eval_says_when_the_model_knows_its_classes_by_other_names(capsys):
    from types import SimpleNamespace

    from atrous.cli.eval import _warn_if_classes_differ

    model = SimpleNamespace(metadata={"class_names": ["road", "car", "sky"]})
    _warn_if_classes_differ(model, SimpleNamespace(class_names=["road", "car", "sky"]))
    assert capsys.readouterr().err == ""
    _warn_if_classes_differ(model, SimpleNamespace(class_names=["road", "sky", "car"]))
    err = capsys.readouterr().err
    assert "another order" in err and "class 1 is 'car' for the model and 'sky' for the dataset" in err
