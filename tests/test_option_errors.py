"""Bad options and bad files end in one line that names them, never in an internal TypeError or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import atrous
from atrous.cli import main
from atrous.data import build_dataset, build_instance_dataset, list_datasets, list_instance_datasets
from atrous.data.datasets import _DATASETS
from atrous.data.instances import _INSTANCE_DATASETS
from atrous.models._registry import model_entrypoint
from atrous.options import accepted_keywords

# -- option names are checked before anything is built ----------------------------------


@pytest.mark.parametrize(
    ("model", "typo", "expected"),
    [
        ("deeplabv3_resnet18", "ouput_stride", "output_stride"),
        ("deeplabv3plus_xception65", "act_after_depthwse", "act_after_depthwise"),  # an option of the backbone
        ("unet", "base_ch", "base_chs"),
        ("fcn8s_vgg16", "learn_final_upsample", "learn_final_upsampling"),
        ("maskrcnn_resnet18_fpn", "box_nms_treshold", "box_nms_thresh"),  # through torchvision's MaskRCNN
    ],
)
def test_a_model_option_typo_names_the_option_the_model_and_the_valid_ones(model, typo, expected):
    with pytest.raises(TypeError) as info:
        atrous.create_model(model, **{typo: 1})
    message = str(info.value)
    assert message.startswith(f"model '{model}' has no option '{typo}'. Did you mean {expected}")
    assert "Its options (model.options): " in message and "num_classes" in message
    assert "unexpected keyword" not in message


def test_every_registered_builder_has_its_options_resolved():
    # A refactor that hides options behind something this cannot follow turns the check off
    # silently (it never refuses what it cannot see); this says so instead.
    for name in atrous.list_models():
        accepted = accepted_keywords(model_entrypoint(name))
        assert accepted is not None and "num_classes" in accepted, name
    for name in list_datasets():
        assert accepted_keywords(_DATASETS[name][0], bound=3) is not None, name
    for name in list_instance_datasets():
        assert accepted_keywords(_INSTANCE_DATASETS[name], bound=3) == set(), name
    assert {"label_map", "num_classes", "resize_masks"} <= accepted_keywords(_DATASETS["folder"][0], bound=3)
    assert {"num_samples", "seed", "size"} <= accepted_keywords(_DATASETS["synthetic"][0], bound=3)
    assert "padding" not in accepted_keywords(model_entrypoint("unet"))  # unet() passes it itself


def test_what_cannot_be_followed_is_not_refused():
    def keeps_them(**kwargs):
        return dict(kwargs)  # anything goes

    def pops_one(size, **kwargs):
        kwargs.pop("seed", None)
        return _inner(size, kwargs)

    assert accepted_keywords(keeps_them) is None
    assert accepted_keywords(pops_one) == {"size", "seed", "scale", "shift"}


def _inner(size, options):
    return _leaf(size, **options)


def _leaf(size, *, scale=1.0, shift=0.0):
    return size * scale + shift


def test_dataset_option_typos(tmp_path):
    with pytest.raises(
        TypeError, match=r"^dataset 'synthetic' has no option 'num_sample'\. Did you mean num_samples\?"
    ):
        build_dataset("synthetic", num_sample=4)
    with pytest.raises(TypeError, match=r"dataset 'folder' has no options 'num_class', 'colour_map' \("):
        build_dataset("folder", root=tmp_path, num_class=2, colour_map={})
    with pytest.raises(
        TypeError, match=r"^dataset 'camvid' has no option 'size'; it takes no options \(data\.options\)"
    ):
        build_dataset("camvid", root=tmp_path, size=32)
    with pytest.raises(
        TypeError, match=r"instance dataset 'dsb2018_nuclei' has no option 'vflip'; it takes no options"
    ):
        build_instance_dataset("dsb2018_nuclei", root=tmp_path, vflip=0.5)


TINY = [
    "--set",
    "model.name=deeplabv3_resnet18",
    "--set",
    "data.options={size: 32, num_classes: 3}",
    "--set",
    "data.train_options={num_samples: 4}",
    "--set",
    "data.val_options={num_samples: 2}",
    "--set",
    "data.workers=0",
    "--set",
    "train.progress=false",
]


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model.options={ouput_stride: 8}", "model 'deeplabv3_resnet18' has no option 'ouput_stride'. Did you mean"),
        ("data.train_options={num_sample: 4}", "dataset 'synthetic' has no option 'num_sample'. Did you mean"),
    ],
)
def test_train_reports_an_option_typo_in_one_line(override, expected, tmp_path, capsys):
    assert main(["train", "--run-dir", str(tmp_path / "run"), *TINY, "--set", override]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"atrous train: error: {expected}") and "\n" not in err


@pytest.mark.parametrize(
    ("model", "options", "expected"),
    [
        ("deeplabv3_resnet18", "{in_chans: 0}", "in_chans must be a positive integer, got 0"),
        ("deeplabv3_resnet18", "{norm_layer: bogus}", "norm_layer must be a normalisation layer class"),
        ("deeplabv3plus_resnet18", "{separable: maybe}", "separable must be true or false, got 'maybe'"),
        ("deeplabv3plus_resnet18", "{aspp_rates: abc}", "aspp_rates must be a list of positive integers, got 'abc'"),
        ("deeplabv3plus_resnet18", "{aspp_rates: [-1, 2, 3]}", "aspp_rates must be a list of positive integers"),
    ],
)
def test_train_refuses_a_model_option_of_the_wrong_kind(model, options, expected, tmp_path, capsys):
    # The right name with a value a YAML typo makes: refused before the run starts, in one line.
    argv = ["train", "--run-dir", str(tmp_path / "run"), *TINY, "--set", f"model.name={model}"]
    assert main([*argv, "--set", f"model.options={options}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"atrous train: error: {expected}") and "\n" not in err
    assert not (tmp_path / "run" / "config.yaml").exists()


# -- an unreadable file with data.workers >= 1: the worker's error, in one line ------------


def _folder_with_a_broken_image(root: Path) -> Path:
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(root / "images" / f"{i}.png")
        mask = np.zeros((32, 32), np.uint8)
        mask[8:24, 8:24] = 1
        Image.fromarray(mask).save(root / "masks" / f"{i}.png")
    broken = root / "images" / "2.png"
    broken.write_bytes(b"not a png")
    return broken


# One interpreter runs both commands through the CLI's main() (what `python -m atrous` runs):
# importing torch is most of a run's cost.
_TWO_COMMANDS = """
import sys
from atrous.cli import main
train = main(sys.argv[1 : sys.argv.index("--then")])
print("--then", file=sys.stderr, flush=True)
sys.exit(10 * train + main(sys.argv[sys.argv.index("--then") + 1 :]))
"""


def test_train_and_eval_with_workers_name_the_unreadable_image(tmp_path):
    broken = _folder_with_a_broken_image(tmp_path / "data")
    atrous.create_model("deeplabv3_resnet18", num_classes=2).save_pretrained(
        tmp_path / "model", metadata={"class_names": ["background", "object"]}
    )
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        f"model: {{name: deeplabv3_resnet18}}\n"
        f"data: {{dataset: folder, root: {tmp_path / 'data'}, val_split: train, options: {{num_classes: 2}}, "
        "workers: 1, crop_size: [32, 32], batch_size: 2}\n"  # workers: the error happens in a worker process
        "train: {steps: 2, amp: off, progress: false}\n"
    )
    train = ["train", "-c", str(recipe), "--run-dir", str(tmp_path / "run")]
    evaluate = ["eval", str(tmp_path / "model"), "-c", str(recipe), "--precision", "fp32"]
    env = {**os.environ, "ATROUS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-c", _TWO_COMMANDS, *train, "--then", *evaluate],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=300,
    )
    assert result.returncode == 22, result.stderr  # exit 2 from each
    assert "Traceback" not in result.stderr and "DataLoader worker" not in result.stderr
    train_err, eval_err = result.stderr.split("--then\n")
    for command, err in (("train", train_err), ("eval", eval_err)):
        [line] = [line for line in err.splitlines() if "error:" in line]
        assert f"atrous {command}: error: {broken} is not an image file" in line
