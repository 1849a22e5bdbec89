"""Bad input to the real CLI: one table of cases, each run through the CLI's ``main`` (what
``python -m atrous …`` runs) in its own process.

Every case expects exit code 2 (``atrous doctor``: 3 when it finds problems; a few
controls: 0), no traceback, and the error as ONE line of stderr that names the file or
option involved. For the commands that write (predict, portrait, export, eval --json,
train, quantize) it also checks that no file that was there before changed (a SHA-256 of
every file in the case's folder) unless the case allows it, and that no ``*.tmp`` file is
left behind.

Each invocation runs in a folder of its own; the files every case only reads (a tiny saved
model, a trained run, two recipes) are made once and checked unchanged at the end. The
invocations run a few at a time (``ATROUS_TEST_JOBS``, default 2), each in a process forked
from one server that imported atrous once (``tests._reliability.ForkedCli``): started
fresh, a process would spend most of its life importing torch. Some invocations are checked by several cases
(``predict`` on a folder of bad images: one skipped line per file; ``doctor`` on a broken
dataset: one problem per file).

docs/reliability.md says what these cases promise.
"""

from __future__ import annotations

import importlib.util
import io
import os
import re
import shutil
import struct
import time
import zipfile
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tests._reliability import (
    MAIN_MODULE,
    CliResult,
    ForkedCli,
    changed_files,
    cli_env,
    dead_pid,
    fingerprint,
    is_allowed,
    temp_leftovers,
)

TIMEOUT_S = 180  # per invocation; a case that needs longer has gone wrong
WRITING = {"predict", "portrait", "export", "train", "quantize"}  # and eval with --json
HAS_OPENVINO = importlib.util.find_spec("openvino") is not None


# --- the table ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    """One CLI invocation. ``{c}`` in an argument is its own folder, ``{s}`` the shared one."""

    key: str
    argv: tuple[str, ...]
    setup: Callable[[Path, Path], None] | None = None  # (case folder, shared folder)
    code: int = 2
    allowed: tuple[str, ...] = ()  # files present before that it may change (globs, or folders)
    needs: str | None = None  # "openvino" (importable), or "non-root" (permissions bind)

    @property
    def command(self) -> str:
        return self.argv[0]

    @property
    def writes(self) -> bool:
        return self.command in WRITING or (self.command == "eval" and "--json" in self.argv)

    def args(self, case_dir: Path, shared: Path) -> list[str]:
        return [a.replace("{c}", str(case_dir)).replace("{s}", str(shared)) for a in self.argv]


@dataclass(frozen=True)
class Case:
    id: str
    run: Run
    expect: tuple[str, ...]  # substrings of the one error line (kind "report": of stdout)
    kind: str = "error"  # error: one "atrous CMD: error: …" line; skip: "atrous predict: skipped …";
    # report: doctor's report on stdout; ok: success
    forbid: tuple[str, ...] = ()  # substrings the error line must not hold
    outputs: tuple[str, int] | None = None  # (folder, number of files it must hold afterwards)


def _write(path: Path, data: bytes | str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def _rgb(path: Path, height: int = 32, width: int = 32, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(path)
    return path


def _mask(path: Path, values: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(values.astype(np.uint8)).save(path)
    return path


def _labels(height: int = 32, width: int = 32, num_classes: int = 3, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, num_classes, (height, width))


def _png_bytes(height: int = 32, width: int = 32, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
        buffer, format="PNG"
    )
    return buffer.getvalue()


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)


def _bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A few dozen bytes whose header claims 10¹⁰ pixels: a decompression bomb."""
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(b"\x00" * 64))
        + _png_chunk(b"IEND", b"")
    )


def _corrupt_png() -> bytes:
    data = bytearray(_png_bytes(seed=1))
    for i in range(60, len(data) - 20):  # the pixel data, past the header: checksums no longer match
        data[i] ^= 0x5A
    return bytes(data)


def _folder_dataset(root: Path, names=("a", "b", "c"), num_classes: int = 3) -> Path:
    for i, name in enumerate(names):
        _rgb(root / "images" / f"{name}.png", seed=i)
        _mask(root / "masks" / f"{name}.png", _labels(num_classes=num_classes, seed=i))
    return root


# Setups: (case folder, shared folder) -> None.


def _bad_images(c: Path, s: Path) -> None:
    folder = c / "in"
    shutil.copy(s / "good.png", _write(folder / "good.png", b""))
    _write(folder / "corrupt.png", _corrupt_png())
    _write(folder / "truncated.png", _png_bytes(64, 64)[:300])
    _write(folder / "empty.png", b"")
    _write(folder / "notes.jpg", "not a picture: a shopping list\n")
    _write(folder / "bomb.png", _bomb_png())


def _one_image(c: Path, s: Path) -> None:
    shutil.copy(s / "good.png", _write(c / "a.png", b""))


def _image_in_folder(c: Path, s: Path) -> None:
    shutil.copy(s / "good.png", _write(c / "in" / "a.png", b""))


def _same_stem(c: Path, s: Path) -> None:
    _rgb(c / "in" / "a.png", seed=1)
    Image.open(s / "good.png").convert("RGB").save(_write(c / "in" / "a.jpg", b""), format="JPEG")


def _previous_output(c: Path, s: Path) -> None:
    _one_image(c, s)
    _write(c / "out" / "a.png", b"a previous run's label map")


def _stale_temp(c: Path, s: Path) -> None:
    _one_image(c, s)
    _write(c / "out" / f".a.png.atrous-{dead_pid()}-k3j9x2.tmp", b"half a png from a killed run")


def _regular_file(c: Path, s: Path) -> None:
    _one_image(c, s)
    _write(c / "file.txt", "a file, not a folder\n")


def _read_only_folder(c: Path, s: Path) -> None:
    _one_image(c, s)
    (c / "locked").mkdir()
    (c / "locked").chmod(0o555)


def _zip_model(c: Path, s: Path) -> None:
    with zipfile.ZipFile(c / "weights.zip", "w") as archive:
        archive.writestr("readme.txt", "a zip, not a checkpoint\n")


def _other_architecture(c: Path, s: Path) -> None:
    # config.json says U-Net with 4 base channels, the weights are of one with 8.
    shutil.copytree(s / "model", c / "other_arch")
    shutil.copy(s / "model_wide" / "model.safetensors", c / "other_arch" / "model.safetensors")


def _portrait(c: Path, s: Path) -> None:
    shutil.copy(s / "good.png", _write(c / "photo.png", b""))
    subject = np.zeros((32, 32), np.uint8)
    subject[8:24, 8:24] = 255
    _mask(c / "subject.png", subject)


def _portrait_previous(c: Path, s: Path) -> None:
    _portrait(c, s)
    _write(c / "result.png", b"a previous portrait")


def _portrait_dir(c: Path, s: Path) -> None:
    _portrait(c, s)
    (c / "photo_dir").mkdir()


def _model_copy(c: Path, s: Path) -> None:
    shutil.copytree(s / "model", c / "model")


def _model_with_export(c: Path, s: Path) -> None:
    _model_copy(c, s)
    _write(c / "model" / "model.onnx", b"an earlier export")


def _run_copy(c: Path, s: Path) -> None:
    shutil.copytree(s / "run", c / "run")


def _run_and_json(c: Path, s: Path) -> None:
    _run_copy(c, s)
    _write(c / "m.json", '{"miou": 0.5}\n')


def _run_random_last(c: Path, s: Path) -> None:
    _run_copy(c, s)
    _write(c / "run" / "last.pt", np.random.default_rng(0).bytes(4096))


def _my_run(c: Path, s: Path) -> None:
    shutil.copytree(s / "run", c / "my_run")


def _my_run_with_int8(c: Path, s: Path) -> None:
    _my_run(c, s)
    _write(c / "my_run" / "int8" / "int8.json", "{}\n")


def _empty_run(c: Path, s: Path) -> None:
    (c / "run").mkdir()  # a run folder without last.pt


def _broken_yaml(c: Path, s: Path) -> None:
    _write(c / "broken.yaml", "train:\n  lr: 0.01\n  steps: [2, 3\n")


def _scientific_yaml(c: Path, s: Path) -> None:
    text = (s / "tiny.yaml").read_text()
    _write(c / "sci.yaml", text.replace("lr: 0.01", "lr: 1e-3").replace("momentum: 0.9", "momentum: 1.5"))


def _text_checkpoint(c: Path, s: Path) -> None:
    _write(c / "notes.pt", "these are notes, not weights\n")


def _data_out_of_range(c: Path, s: Path) -> None:
    _folder_dataset(c / "data")
    _mask(c / "data" / "masks" / "badlabel.png", np.full((32, 32), 7))
    _rgb(c / "data" / "images" / "badlabel.png", seed=9)


def _data_binary(c: Path, s: Path) -> None:
    for i, name in enumerate(("a", "b", "c")):
        _rgb(c / "data" / "images" / f"{name}.png", seed=i)
        foreground = np.zeros((32, 32))
        foreground[4 + i : 20 + i, 6:26] = 255  # 0/255, as many tools export a binary mask
        _mask(c / "data" / "masks" / f"{name}.png", foreground)


def _data_size_mismatch(c: Path, s: Path) -> None:
    _folder_dataset(c / "data")
    _rgb(c / "data" / "images" / "sized.png", 32, 32, seed=5)
    _mask(c / "data" / "masks" / "sized.png", _labels(24, 40, seed=5))


def _data_unmatched(c: Path, s: Path) -> None:
    _folder_dataset(c / "data")
    _rgb(c / "data" / "images" / "lonely.png", seed=6)


def _data_problems(c: Path, s: Path) -> None:
    _data_out_of_range(c, s)
    _rgb(c / "data" / "images" / "sized.png", 32, 32, seed=5)
    _mask(c / "data" / "masks" / "sized.png", _labels(24, 40, seed=5))
    _write(c / "data" / "images" / "corrupt.png", _corrupt_png())
    _mask(c / "data" / "masks" / "corrupt.png", _labels(seed=7))


MODEL = "{s}/model"
GOOD = "{s}/good.png"
FP32 = ("--precision", "fp32")  # no precision timing: these cases are about input, not speed


def predict(key: str, *args: str, setup=None, code: int = 2, allowed=()) -> Run:
    return Run(key, ("predict", *args), setup, code, allowed)


def portrait(key: str, *args: str, setup=_portrait) -> Run:
    return Run(key, ("portrait", *args), setup)


def train(key: str, *sets: str, config: str = "{s}/tiny.yaml", extra=(), setup=None) -> Run:
    argv = ["train"] + (["-c", config] if config else []) + ["--run-dir", "{c}/run", *extra]
    for item in sets:
        argv += ["--set", item]
    return Run(key, tuple(argv), setup)


def folder_train(key: str, *sets: str, setup) -> Run:
    return train(key, "data.root={c}/data", *sets, config="{s}/folder.yaml", setup=setup)


def resume(key: str, *sets: str, config: str | None = "{s}/tiny.yaml", setup=_run_copy) -> Run:
    return train(key, *sets, config=config, extra=("--resume",), setup=setup)


BAD_IMAGES = predict("predict-bad-images", MODEL, "{c}/in", "-o", "{c}/out", *FP32, setup=_bad_images)
DOCTOR_PROBLEMS = Run(
    "doctor-problems", ("doctor", "folder", "--root", "{c}/data", "-o", "num_classes=3"), _data_problems, code=3
)


def _b_rule(key: str, value: str, expect: str) -> Case:
    """A value every training rule refuses at load time (rule B), before a model is built."""
    return Case(f"train-{key}", train(f"train-{key}", value), (expect,))


CASES: list[Case] = [
    # -- unreadable images: one predict over a folder of them, one skipped line per file ----
    Case("predict-corrupt-image", BAD_IMAGES, ("corrupt.png",), "skip", outputs=("out", 2)),
    Case("predict-truncated-image", BAD_IMAGES, ("truncated.png",), "skip"),
    Case("predict-empty-file", BAD_IMAGES, ("empty.png",), "skip"),
    Case("predict-not-an-image", BAD_IMAGES, ("notes.jpg",), "skip"),
    Case("predict-decompression-bomb", BAD_IMAGES, ("bomb.png", "too large"), "skip"),
    # -- paths ---------------------------------------------------------------------------
    Case("predict-missing-input", predict("predict-missing", MODEL, "{c}/nope.png", "-o", "{c}/out"), ("nope.png",)),
    Case(
        "portrait-input-is-a-folder",
        portrait(
            "portrait-dir",
            "{c}/photo_dir",
            "{c}/result.png",
            "--mask",
            "{c}/subject.png",
            "--blur",
            "3",
            setup=_portrait_dir,
        ),
        ("photo_dir", "not a file"),
    ),
    Case(
        "portrait-unknown-output-extension",
        portrait("portrait-ext", "{c}/photo.png", "{c}/result.xyz", "--mask", "{c}/subject.png", "--blur", "3"),
        ("result.xyz",),
    ),
    Case(
        "predict-output-under-a-regular-file",
        predict("predict-under-file", MODEL, "{c}/a.png", "-o", "{c}/file.txt/out", *FP32, setup=_regular_file),
        ("file.txt",),
    ),
    Case(
        "predict-read-only-output-folder",
        Run(
            "predict-read-only",
            ("predict", MODEL, "{c}/a.png", "-o", "{c}/locked/out", *FP32),
            _read_only_folder,
            needs="non-root",
        ),
        ("locked",),
    ),
    # -- outputs never overwrite inputs; existing outputs need --overwrite ------------------
    Case(
        "portrait-output-is-the-input",
        portrait("portrait-same", "{c}/photo.png", "{c}/photo.png", "--mask", "{c}/subject.png", "--blur", "3"),
        ("photo.png",),
    ),
    Case(
        "predict-output-folder-is-the-input-folder",
        predict("predict-same-folder", MODEL, "{c}/in/a.png", "-o", "{c}/in", *FP32, setup=_image_in_folder),
        ("a.png",),
    ),
    Case(
        "export-output-is-the-model-weights",
        Run("export-same", ("export", "{c}/model", "-o", "{c}/model/model.safetensors"), _model_copy),
        ("model.safetensors",),
    ),
    Case(
        "eval-json-is-the-run-config",
        Run("eval-json-same", ("eval", "{c}/run", "--json", "{c}/run/config.yaml", *FP32), _run_copy),
        ("config.yaml",),
    ),
    Case(
        "predict-existing-output-needs-overwrite",
        predict("predict-existing", MODEL, "{c}/a.png", "-o", "{c}/out", *FP32, setup=_previous_output),
        ("--overwrite",),
    ),
    Case(
        "portrait-existing-output-needs-overwrite",
        portrait(
            "portrait-existing",
            "{c}/photo.png",
            "{c}/result.png",
            "--mask",
            "{c}/subject.png",
            "--blur",
            "3",
            setup=_portrait_previous,
        ),
        ("--overwrite",),
    ),
    Case(
        "export-existing-output-needs-overwrite",
        Run("export-existing", ("export", "{c}/model"), _model_with_export),
        ("--overwrite",),
    ),
    Case(
        "eval-existing-json-needs-overwrite",
        Run("eval-json-existing", ("eval", "{c}/run", "--json", "{c}/m.json", *FP32), _run_and_json),
        ("--overwrite",),
    ),
    Case(
        "predict-same-stem-inputs-get-distinct-outputs",
        predict("predict-same-stem", MODEL, "{c}/in", "-o", "{c}/out", *FP32, setup=_same_stem, code=0),
        (),
        "ok",
        outputs=("out", 4),
    ),
    Case(
        "predict-removes-stale-temp-files",
        predict(
            "predict-stale-temp",
            MODEL,
            "{c}/a.png",
            "-o",
            "{c}/out",
            *FP32,
            setup=_stale_temp,
            code=0,
            allowed=("out/.*.tmp",),
        ),
        (),
        "ok",
        outputs=("out", 2),
    ),
    # -- bad numbers -----------------------------------------------------------------------
    Case("predict-alpha-2", predict("predict-alpha", MODEL, GOOD, "-o", "{c}/out", "--alpha", "2"), ("--alpha",)),
    Case(
        "portrait-blur-negative",
        portrait("portrait-blur", "{c}/photo.png", "{c}/result.png", "--mask", "{c}/subject.png", "--blur", "-1"),
        ("blur",),
    ),
    Case(
        "predict-memory-1B-skips-the-image",
        predict("predict-memory", MODEL, "{c}/a.png", "-o", "{c}/out", "--memory", "1B", *FP32, setup=_one_image),
        ("a.png",),
        "skip",
    ),
    Case(
        "predict-scales-0",
        predict("predict-scales", MODEL, GOOD, "-o", "{c}/out", "--scales", "0", *FP32),
        ("--scales",),
    ),
    Case(
        "predict-output-stride-7",
        predict("predict-stride", MODEL, GOOD, "-o", "{c}/out", "--output-stride", "7"),
        ("--output-stride",),
    ),
    # -- hyper-parameters, checked when the recipe is loaded (rule B) -----------------------
    _b_rule("lr-zero", "train.lr=0", "train.lr"),
    _b_rule("lr-nan", "train.lr=.nan", "train.lr"),
    _b_rule("lr-inf", "train.lr=.inf", "train.lr"),
    _b_rule("weight-decay-negative", "train.weight_decay=-1e-4", "train.weight_decay"),
    _b_rule("momentum-one", "train.momentum=1", "train.momentum"),
    _b_rule("poly-power-zero", "train.poly_power=0", "train.poly_power"),
    _b_rule("warmup-steps-negative", "train.warmup_steps=-1", "train.warmup_steps"),
    _b_rule("max-time-zero", "train.max_time_s=0", "train.max_time_s"),
    _b_rule("grad-clip-zero", "train.grad_clip=0", "train.grad_clip"),
    _b_rule("crop-size-zero", "data.crop_size=[0, 32]", "data.crop_size"),
    _b_rule("crop-size-one-number", "data.crop_size=[32]", "data.crop_size"),
    Case(
        "train-scientific-notation-in-set",
        train("train-sci-set", "train.lr=1e-3", "train.momentum=1.5"),
        ("train.momentum",),
        forbid=("train.lr",),
    ),
    Case(
        "train-scientific-notation-in-yaml",
        train("train-sci-yaml", config="{c}/sci.yaml", setup=_scientific_yaml),
        ("train.momentum",),
        forbid=("train.lr",),
    ),
    # -- recipes -------------------------------------------------------------------------
    Case(
        "train-yaml-syntax-error", train("train-yaml", config="{c}/broken.yaml", setup=_broken_yaml), ("broken.yaml",)
    ),
    Case("train-unknown-key", train("train-unknown-key", "train.lrr=0.1"), ("train.lrr",)),
    Case("train-wrong-type", train("train-wrong-type", "train.steps=many"), ("train.steps",)),
    Case(
        "train-model-options-typo",
        train("train-model-typo", "model.options={base_chs: 4, batchnorm: true}"),
        ("batchnorm", "batch_norm"),
    ),
    Case(
        "train-data-options-typo",
        train("train-data-typo", "data.options={size: 32, num_clases: 3}"),
        ("num_clases", "num_classes"),
    ),
    Case(
        # A class name the dataset does not have: refused when the data is built, before training.
        "train-copy-paste-unknown-class",
        train("train-copy-paste-class", "data.copy_paste={probability: 0.5, classes: [persn]}"),
        ("copy_paste.classes", "persn"),
    ),
    Case(
        "train-copy-paste-bad-probability",
        train("train-copy-paste-p", "data.copy_paste={probability: 1.5, classes: [1]}"),
        ("data.copy_paste", "probability"),
    ),
    Case("train-unknown-model", train("train-unknown-model", "model.name=unet_paded"), ("unet_paded",)),
    Case("train-unknown-dataset", train("train-unknown-dataset", "data.dataset=synthetc"), ("synthetc",)),
    # -- --resume --------------------------------------------------------------------------
    Case("resume-without-last-pt", resume("resume-no-last", setup=_empty_run), ("last.pt",)),
    Case("resume-with-changed-steps", resume("resume-steps", "train.steps=4"), ("train.steps 2 → 4",)),
    Case(
        # Without -c the run's config.yaml is the base: only the lr differs (not the defaults' model).
        "resume-reads-the-run-config-and-refuses-a-changed-lr",
        resume("resume-lr", "train.lr=0.5", "train.amp=false", config=None),
        ("train.lr 0.01 → 0.5",),
        forbid=("model.name", "train.steps"),
    ),
    # -- files that are not what they claim to be --------------------------------------------
    Case(
        # A damaged file is not a reason to unpickle it: no advice to load with weights_only=False.
        "resume-last-pt-is-random-bytes",
        resume("resume-random", setup=_run_random_last),
        ("last.pt",),
        forbid=("will likely succeed",),
    ),
    Case(
        "predict-model-is-a-zip",
        predict("predict-zip", "{c}/weights.zip", GOOD, "-o", "{c}/out", setup=_zip_model),
        ("weights.zip",),
    ),
    Case(
        "train-checkpoint-path-is-a-text-file",
        train("train-text-checkpoint", "model.checkpoint_path={c}/notes.pt", setup=_text_checkpoint),
        ("notes.pt",),
    ),
    Case(
        "predict-model-of-another-architecture",
        predict("predict-other-arch", "{c}/other_arch", GOOD, "-o", "{c}/out", setup=_other_architecture),
        ("other_arch",),
    ),
    # -- datasets ---------------------------------------------------------------------------
    Case(
        "train-0-255-masks-with-2-classes",
        folder_train("train-binary", "data.options={num_classes: 2}", setup=_data_binary),
        ("label_map",),
    ),
    Case(
        "eval-label-values-past-num-classes",
        Run(
            "eval-out-of-range",
            ("eval", MODEL, "-c", "{s}/folder.yaml", "--set", "data.root={c}/data", "--json", "{c}/m.json", *FP32),
            _data_out_of_range,
        ),
        ("badlabel.png",),
    ),
    Case(
        "train-image-and-mask-sizes-differ-in-a-worker",
        folder_train("train-size-mismatch", "data.workers=1", setup=_data_size_mismatch),
        ("sized.png",),
    ),
    Case(
        "train-image-without-a-mask",
        folder_train("train-unmatched", setup=_data_unmatched),
        ("lonely.png",),
    ),
    Case("doctor-label-out-of-range", DOCTOR_PROBLEMS, ("badlabel.png",), "report"),
    Case("doctor-size-mismatch", DOCTOR_PROBLEMS, ("sized.png",), "report"),
    Case("doctor-unreadable-image", DOCTOR_PROBLEMS, ("corrupt.png",), "report"),
    Case(
        "doctor-0-255-masks-with-2-classes",
        Run("doctor-binary", ("doctor", "folder", "--root", "{c}/data", "-o", "num_classes=2"), _data_binary, code=3),
        ("label_map",),
        "report",
    ),
    # -- quantize (OpenVINO) --------------------------------------------------------------
    Case(
        "quantize-output-is-the-run-with-overwrite",
        Run(
            "quantize-into-run",
            ("quantize", "{c}/my_run", "-o", "{c}/my_run", "--overwrite", "--calibration", "1", "--check", "0"),
            _my_run,
            needs="openvino",
        ),
        ("my_run",),
    ),
    Case(
        "quantize-existing-output-needs-overwrite",
        Run(
            "quantize-existing",
            ("quantize", "{c}/my_run", "--calibration", "1", "--check", "0"),
            _my_run_with_int8,
            needs="openvino",
        ),
        ("--overwrite",),
    ),
]


# --- shared inputs ------------------------------------------------------------------------

TINY_RECIPE = """\
model:
  name: unet_padded
  options: {base_chs: 4}
data:
  dataset: synthetic
  options: {size: 32, num_classes: 3}
  train_options: {num_samples: 4, seed: 0}
  val_options: {num_samples: 2, seed: 1}
  crop_size: [32, 32]
  batch_size: 2
  val_batch_size: 2
  workers: 0
train:
  steps: 2
  lr: 0.01
  momentum: 0.9
  eval_every: 2
  log_every: 1
  checkpoint_every: 2
  amp: false
  progress: false
"""

# A folder dataset (data.root given per case) validated on its own training images.
FOLDER_RECIPE = TINY_RECIPE.replace(
    """  dataset: synthetic
  options: {size: 32, num_classes: 3}
  train_options: {num_samples: 4, seed: 0}
  val_options: {num_samples: 2, seed: 1}
""",
    """  dataset: folder
  val_split: train
  options: {num_classes: 3}
""",
)


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """What cases only read: a tiny saved model (and a wider one's weights), an image, the
    two recipes, and a run trained for two steps (config.yaml, last.pt, best/)."""
    import atrous
    from atrous.config import load_config
    from atrous.engine.trainer import Trainer

    s = tmp_path_factory.mktemp("shared")
    metadata = {"class_names": ["background", "cat", "dog"], "palette": [[0, 0, 0], [200, 0, 0], [0, 200, 0]]}
    atrous.create_model("unet_padded", num_classes=3, base_chs=4).save_pretrained(s / "model", metadata=metadata)
    atrous.create_model("unet_padded", num_classes=3, base_chs=8).save_pretrained(s / "model_wide", metadata=metadata)
    _rgb(s / "good.png", 32, 40)
    (s / "tiny.yaml").write_text(TINY_RECIPE)
    (s / "folder.yaml").write_text(FOLDER_RECIPE)
    Trainer(load_config(s / "tiny.yaml"), s / "run").run()
    return s


@dataclass
class Outcome:
    case_dir: Path
    result: CliResult
    changed: list[str] = field(default_factory=list)
    leftovers: list[str] = field(default_factory=list)


@dataclass
class Results:
    outcomes: dict[str, Outcome]
    shared_changed: list[str]
    seconds: float


def _unmet(needs: str | None) -> str | None:
    """Why a run cannot run here, or None."""
    if needs == "non-root":
        return "root writes into read-only folders" if os.geteuid() == 0 else None
    if needs is not None and importlib.util.find_spec(needs) is None:
        return f"{needs} is not installed"
    return None


def _selected_runs(request) -> list[Run]:
    runs: dict[str, Run] = {}
    for item in request.session.items:
        callspec = getattr(item, "callspec", None)
        case = callspec.params.get("case") if callspec is not None else None
        if not isinstance(case, Case) or item.module is not request.module:
            continue
        if _unmet(case.run.needs) is None:
            runs[case.run.key] = case.run
    return list(runs.values())


_SLOW_FIRST = {"quantize": 0, "export": 1, "train": 2, "eval": 3, "predict": 4, "portrait": 5, "doctor": 6}


@pytest.fixture(scope="module")
def results(request, shared, tmp_path_factory) -> Results:
    """Every selected invocation, run once, a few at a time (``ATROUS_TEST_JOBS``, default 2)."""
    base = tmp_path_factory.mktemp("cases")
    env = cli_env(tmp_path_factory.mktemp("atrous_cache"), OMP_NUM_THREADS="1")
    shared_before = fingerprint(shared)
    runs = sorted(_selected_runs(request), key=lambda r: _SLOW_FIRST.get(r.command, 9))
    cli = ForkedCli()

    def execute(run: Run) -> Outcome:
        case_dir = base / run.key
        case_dir.mkdir()
        if run.setup is not None:
            run.setup(case_dir, shared)
        before = fingerprint(case_dir)
        result = cli.run(run.args(case_dir, shared), cwd=case_dir, env=env, timeout=TIMEOUT_S)
        (base / f"{run.key}.log").write_text(result.describe())  # beside the folder, for a look afterwards
        outcome = Outcome(case_dir, result)
        if run.writes:
            outcome.changed = changed_files(before, case_dir, run.allowed)
            outcome.leftovers = [p for p in temp_leftovers(case_dir) if not is_allowed(p, run.allowed)]
        return outcome

    start = time.perf_counter()
    jobs = int(os.environ.get("ATROUS_TEST_JOBS", "2"))
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        outcomes = dict(zip((r.key for r in runs), pool.map(execute, runs), strict=True))
    seconds = time.perf_counter() - start
    cpu = sum(o.result.cpu_seconds for o in outcomes.values())
    slowest = sorted(outcomes.items(), key=lambda kv: -kv[1].result.cpu_seconds)[:6]
    print(
        f"\n{len(runs)} invocations in {seconds:.1f} s ({jobs} at a time), {cpu:.0f} CPU seconds; most CPU: "
        + ", ".join(f"{key} {o.result.cpu_seconds:.1f}" for key, o in slowest)
    )
    return Results(outcomes, changed_files(shared_before, shared), seconds)


# --- the checks ---------------------------------------------------------------------------

_ERROR_LINE = re.compile(r"^atrous [\w-]+: error: ")
_PROGRESS = re.compile(r"\d+%\|.*\|\s*\d+/\d+")


def _lines(text: str) -> list[str]:
    """Non-empty lines, progress bars (carriage-return updates) left out."""
    return [line for line in re.split(r"[\r\n]+", text) if line.strip() and not _PROGRESS.search(line)]


def test_the_cli_entry_point_exists():
    assert MAIN_MODULE.is_file(), f"{MAIN_MODULE} is missing: `python -m atrous` would not run"


def test_the_table_has_distinct_cases():
    ids = [case.id for case in CASES]
    assert len(ids) == len(set(ids))
    runs: dict[str, Run] = {}
    for case in CASES:
        assert runs.setdefault(case.run.key, case.run) == case.run, f"two invocations named {case.run.key}"
    assert len(CASES) >= 45


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, results: Results):
    if case.run.needs == "non-root" and _unmet(case.run.needs):
        pytest.skip(_unmet(case.run.needs))
    elif case.run.needs is not None:
        pytest.importorskip(case.run.needs)
    outcome = results.outcomes[case.run.key]
    result = outcome.result
    info = result.describe()
    assert result.returncode is not None, f"timed out after {TIMEOUT_S} s\n{info}"
    assert "Traceback" not in result.stderr, info
    assert result.returncode == case.run.code, f"exit {result.returncode}, expected {case.run.code}\n{info}"
    lines = _lines(result.stderr)
    if case.kind == "error":
        errors = [line for line in lines if _ERROR_LINE.match(line)]
        assert len(errors) == 1, f"expected one 'atrous {case.run.command}: error: …' line\n{info}"
        assert lines[-1] == errors[0], f"the error must be one line, the last one on stderr\n{info}"
        for text in case.expect:
            assert text in errors[0], f"the error does not name {text!r}\n{info}"
        for text in case.forbid:
            assert text not in errors[0], f"the error holds {text!r}, which it must not\n{info}"
    elif case.kind == "skip":
        prefix = f"atrous {case.run.command}: "
        skipped = [line for line in lines if line.startswith(prefix + "skipped ")]
        assert [line for line in skipped if all(text in line for text in case.expect)], (
            f"no one-line 'skipped' report naming {case.expect}\n{info}"
        )
        strays = [line for line in lines if not line.startswith(prefix)]
        assert not strays, f"stderr lines that are not one-line reports: {strays}\n{info}"
    elif case.kind == "report":
        for text in case.expect:
            assert text in result.stdout, f"the report does not name {text!r}\n{info}"
    if case.outputs is not None:
        folder, count = case.outputs
        written = sorted(p.name for p in (outcome.case_dir / folder).glob("*") if not p.name.startswith("."))
        assert len(written) == count, f"expected {count} files in {folder}, found {written}\n{info}"
    if case.run.writes:
        assert not outcome.changed, f"input files changed: {outcome.changed}\n{info}"
        assert not outcome.leftovers, f"temporary files left behind: {outcome.leftovers}\n{info}"


def test_shared_inputs_unchanged(results: Results):
    """The model, image, recipes and run that every case reads are as they were."""
    assert not results.shared_changed, results.shared_changed
