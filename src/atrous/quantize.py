"""int8 post-training static quantization of a semantic model, with OpenVINO and NNCF.

::

    from atrous.quantize import quantize_model
    report = quantize_model(model, calibration_images, "runs/voc/int8", check=held_out_pairs)
    model8 = Int8Model.load("runs/voc/int8")   # atrous.inference.int8

**What it does.** Post-training static quantization: no retraining. The weights of every
convolution become int8, one scale per output channel; the activations entering them
become int8 too, with one scale and zero point per tensor fixed ahead of time from the
activation ranges seen on ``N`` calibration images (hence *static*: nothing is measured
at inference). NNCF's fast bias correction then shifts each layer's bias so that the
mean of its int8 output matches the float32 one on those images. The convolutions run
in int8 with int32 accumulation; OpenVINO uses the CPU's int8 dot-product instructions
where present (AVX-512 VNNI, AMX-INT8 on Sapphire Rapids and later; AVX2 otherwise).

**Why OpenVINO + NNCF.** On an AMD EPYC (Zen 4, AVX-512 VNNI, 2 cores), DeepLab v3-ResNet-50
at output stride 8 on a 1×3×512×512 input takes 2.1 s in PyTorch eager float32, 0.44 s
as an ONNX Runtime int8 model, and 0.34 s as an OpenVINO int8 model quantized by
``nncf.quantize`` from the ONNX file :func:`atrous.export.export_model` writes.

**Preset.** NNCF's ``PERFORMANCE`` preset: symmetric int8 weights and activations.
Measured against ``MIXED`` (asymmetric activations, a zero point per tensor) by label
agreement with float32 on held-out images: DeepLab v3-ResNet-50 (output stride 16)
trained briefly on CamVid, 16 training images to calibrate, 16 val images (2.76 M pixels)
to check: 99.03 % ``PERFORMANCE``, 98.93 % ``MIXED`` (pixel accuracy 53.39 % and 53.42 %,
float32 53.36 %); the tiny test model: 99.10 % and 99.05 %. Latency was the same
(0.104 s both at 1×3×512×512 on two cores). ``MIXED`` buys nothing here, so the simpler
scheme stays; ``preset="mixed"`` is there to try it on other models.

**Nothing half-written.** Everything is written to a temporary sibling folder
(``.int8.atrous-PID-XXXX.tmp``), loaded back and run, and only then renamed into place; the
temporary folders are removed on any error. An existing folder is kept unless
``overwrite=True``, and then replaced only once the new one is complete (and only when it
is an int8 model folder: ``overwrite`` never deletes a run or anything else).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .data.constants import IGNORE_INDEX
from .export import export_model, model_name
from .inference.int8 import INFO_NAME, INSTALL_HINT, MODEL_BIN, MODEL_XML, Int8Model, import_openvino
from .models import task_of
from .utils.atomic import TEMP_SUFFIX, _umask, atomic_write_text, temp_prefix

#: NNCF's preset; the module docstring has the measurement behind the choice.
PRESET = "performance"
PRESETS = ("performance", "mixed")
#: The format tag and version written to ``int8.json``.
FORMAT = "atrous-int8"
FORMAT_VERSION = 1


@dataclass(frozen=True)
class QuantizeReport:
    """What :func:`quantize_model` did.

    Attributes:
        folder: the int8 model folder written.
        source: the float32 model's name.
        calibration_images: images the activation ranges were calibrated on.
        input_sizes: their distinct (height, width).
        seconds: the whole call: export, calibration, saving and the check.
        quantize_seconds: ``nncf.quantize`` alone.
        preset: the NNCF preset used.
        agreement: fraction of the check images' pixels where the int8 and float32
            models predict the same class (``None`` without check images).
        check_images, check_pixels: how many images and pixels that fraction is over.
        accuracy_fp32, accuracy_int8: pixel accuracy of each model against the check
            masks, over labelled pixels (``None`` when no mask was given).
    """

    folder: Path
    source: str
    calibration_images: int
    input_sizes: list[tuple[int, int]]
    seconds: float
    quantize_seconds: float
    preset: str
    agreement: float | None = None
    check_images: int = 0
    check_pixels: int = 0
    accuracy_fp32: float | None = None
    accuracy_int8: float | None = None

    def summary(self) -> str:
        """A few lines for people: where, from how many images, how long, how faithful."""
        lines = [
            f"wrote {self.folder}: {self.source} in int8 (OpenVINO), calibrated on {self.calibration_images} "
            f"image{'s' if self.calibration_images != 1 else ''} in {self.seconds:.1f} s "
            f"(nncf.quantize {self.quantize_seconds:.1f} s, preset {self.preset})"
        ]
        if self.agreement is None:
            lines.append("  label agreement with float32: not checked")
        else:
            lines.append(
                f"  label agreement with float32: {100 * self.agreement:.2f} % of {self.check_pixels:,} pixels "
                f"on {self.check_images} check image{'s' if self.check_images != 1 else ''}"
            )
        if self.accuracy_fp32 is not None and self.accuracy_int8 is not None:
            lines.append(
                f"  pixel accuracy: int8 {100 * self.accuracy_int8:.2f} %, float32 {100 * self.accuracy_fp32:.2f} %"
            )
        return "\n".join(lines)


def check_target(folder: str | os.PathLike, overwrite: bool = False) -> Path:
    """Refuse a target that exists (unless ``overwrite``) or that overwriting must not delete.

    Raises:
        FileExistsError: ``folder`` exists and ``overwrite`` is false, or it is a file,
            or a folder that is neither empty nor an int8 model folder.
    """
    folder = Path(folder)
    if not folder.exists():
        return folder
    if not folder.is_dir():
        raise FileExistsError(f"{folder} exists and is a file, not an int8 model folder; choose another output")
    if not overwrite:
        raise FileExistsError(f"{folder} already exists; pass --overwrite (overwrite=True) to replace it")
    if any(folder.iterdir()) and not (folder / INFO_NAME).is_file():
        raise FileExistsError(
            f"{folder} is not an int8 model folder (it has no {INFO_NAME}); --overwrite replaces int8 model "
            "folders only: choose another output"
        )
    # Replacing deletes the folder: anything beside the model's own files is a user's.
    others = sorted(p.name for p in folder.iterdir() if p.name not in (INFO_NAME, MODEL_XML, MODEL_BIN))
    if others:
        listed = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise FileExistsError(
            f"{folder} holds {listed} besides an int8 model, which --overwrite would delete: choose another output"
        )
    return folder


def quantize_model(
    model: nn.Module,
    calibration: Iterable[Any],
    folder: str | os.PathLike,
    *,
    overwrite: bool = False,
    check: Iterable[Any] | None = None,
    preset: str = PRESET,
    progress: bool = False,
) -> QuantizeReport:
    """Quantize ``model`` to int8 and write an int8 model folder; return what was done.

    Args:
        model: an atrous semantic segmentation model (float32, on the CPU, in eval mode;
            any other is copied for the export, not changed).
        calibration: normalised float images, each a tensor (1, C, H, W) or (C, H, W), or
            a pair whose first element is one (a dataset's ``(image, mask)``). Sizes may
            differ. A few dozen images from the training set are enough.
        folder: the int8 model folder to write (``model.xml``, ``model.bin``, ``int8.json``).
        overwrite: replace ``folder`` if it is an existing int8 model folder.
        check: held-out ``(image, mask)`` pairs (or bare images; ``mask`` may be
            ``None``), images shaped as in ``calibration``: the int8 model's labels are
            compared with float32's (and with the masks, where given).
        preset: NNCF's ``"performance"`` (default: symmetric activations) or ``"mixed"``
            (asymmetric activations) preset.
        progress: show NNCF's progress bars.

    Raises:
        FileExistsError: ``folder`` exists (see :func:`check_target`).
        ValueError: an instance model, bad calibration images, or OpenVINO/NNCF missing.
        ExportError: the model cannot be exported (``atrous.export``).
    """
    start = time.perf_counter()
    folder = check_target(folder, overwrite)
    if task_of(model) != "semantic":
        raise ValueError(
            f"{model_name(model)} is an instance-segmentation model; int8 quantization covers semantic models"
        )
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    if getattr(model, "num_classes", None) is None or getattr(model, "output_stride", None) is None:
        raise ValueError(f"{model_name(model)} is not an atrous segmentation model (no num_classes, output_stride)")
    ov = import_openvino()
    nncf = _import_nncf()
    in_chans = int((getattr(model, "config", None) or {}).get("in_chans", 3))
    name = model_name(model)

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=temp_prefix(folder.name), suffix=TEMP_SUFFIX, dir=folder.parent))
    try:
        # Read first (a generator may load images from disk): bad images fail before the export.
        arrays = [_as_array(item, in_chans, f"calibration image {i}") for i, item in enumerate(calibration)]
        if not arrays:
            raise ValueError("calibration is empty: quantization needs at least one image")
        with tempfile.TemporaryDirectory(prefix="atrous-int8-") as scratch:
            onnx_path = export_model(model, Path(scratch) / "model.onnx", format="onnx")
            network = ov.convert_model(str(onnx_path))
        tick = time.perf_counter()
        with _quiet_nncf(progress):
            quantized = nncf.quantize(
                network,
                nncf.Dataset(arrays),
                subset_size=len(arrays),
                preset=getattr(nncf.QuantizationPreset, preset.upper()),
                fast_bias_correction=True,
            )
        quantize_seconds = time.perf_counter() - tick
        ov.save_model(quantized, str(staging / MODEL_XML), compress_to_fp16=False)
        sizes = sorted({(int(a.shape[2]), int(a.shape[3])) for a in arrays})
        info = _info(model, name, arrays, sizes, preset, ov, nncf)
        atomic_write_text(staging / INFO_NAME, json.dumps(info, indent=2) + "\n")

        # The folder as written is loaded back and run, so what lands in place is known to work.
        model8 = Int8Model.load(staging)
        if check is None:
            model8(torch.from_numpy(arrays[0]))
            figures: dict[str, Any] = {}
        else:
            figures = _agreement(model, model8, check, in_chans)
            info.update(figures)
            atomic_write_text(staging / INFO_NAME, json.dumps(info, indent=2) + "\n")
        del model8  # OpenVINO keeps model.bin mapped until the compiled model goes
        os.chmod(staging, 0o777 & ~_umask())  # mkdtemp makes 0700; a folder gets what mkdir gives
        _move_into_place(staging, folder, overwrite)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return QuantizeReport(
        folder=folder,
        source=name,
        calibration_images=sum(int(a.shape[0]) for a in arrays),
        input_sizes=sizes,
        seconds=time.perf_counter() - start,
        quantize_seconds=quantize_seconds,
        preset=preset,
        **figures,
    )


def _import_nncf() -> Any:
    # NNCF's PyTorch backend imports torch.utils.cpp_extension, which warns about CUDA_HOME
    # on a machine without CUDA: nothing int8 on the CPU cares about.
    logger = logging.getLogger("torch.utils.cpp_extension")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        import nncf
    except ImportError as exc:
        raise ValueError(f"int8 quantization needs NNCF, which is not installed here: {INSTALL_HINT}") from exc
    finally:
        logger.setLevel(level)
    return nncf


@contextlib.contextmanager
def _quiet_nncf(progress: bool) -> Iterator[None]:
    """NNCF logs at INFO and draws rich progress bars on stdout: keep warnings, and the
    bars only when asked for."""
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        with contextlib.nullcontext() if progress else contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def _image(item: Any) -> Any:
    """The image of a calibration or check item: the item, or the first of a pair."""
    return item[0] if isinstance(item, tuple | list) else item


def _as_array(item: Any, in_chans: int, what: str) -> np.ndarray:
    """A (1, C, H, W) float32 C-contiguous array from a tensor (C, H, W) or (1, C, H, W)."""
    image = _image(item)
    if not isinstance(image, torch.Tensor):
        raise ValueError(f"{what} must be a torch.Tensor (1, {in_chans}, H, W), got {type(image).__name__}")
    if image.ndim == 3:
        image = image.unsqueeze(0)
    if image.ndim != 4 or image.shape[1] != in_chans or not image.is_floating_point():
        raise ValueError(
            f"{what} must be a normalised float tensor (1, {in_chans}, H, W), got {image.dtype} {tuple(image.shape)}"
        )
    return np.ascontiguousarray(image.detach().cpu().to(torch.float32).numpy())


def _info(
    model: nn.Module, name: str, arrays: list[np.ndarray], sizes: list[tuple[int, int]], preset: str, ov: Any, nncf: Any
) -> dict[str, Any]:
    from . import __version__

    config = dict(getattr(model, "config", None) or {"name": name})
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "source": name,
        "num_classes": int(model.num_classes),
        "output_stride": int(model.output_stride),
        "config": config,
        "metadata": dict(getattr(model, "metadata", None) or {}),
        "calibration_images": sum(int(a.shape[0]) for a in arrays),
        "input_sizes": [list(size) for size in sizes],
        "preset": preset,
        "agreement": None,
        "check_images": 0,
        "check_pixels": 0,
        "accuracy_fp32": None,
        "accuracy_int8": None,
        "atrous_version": __version__,
        "openvino_version": ov.__version__,
        "nncf_version": nncf.__version__,
        "torch_version": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@torch.inference_mode()
def _agreement(model: nn.Module, model8: Int8Model, check: Iterable[Any], in_chans: int) -> dict[str, Any]:
    """Label agreement int8 vs float32 on ``check``, and each one's pixel accuracy where masks are given."""
    images = pixels = agree = labelled = right_fp32 = right_int8 = 0
    reference = _reference(model)
    for i, item in enumerate(check):
        x = torch.from_numpy(_as_array(item, in_chans, f"check image {i}"))
        mask = item[1] if isinstance(item, tuple | list) and len(item) > 1 else None
        labels = reference(x).argmax(1)
        labels8 = model8(x).argmax(1)
        images += 1
        pixels += labels.numel()
        agree += int((labels == labels8).sum())
        if mask is not None:
            mask = torch.as_tensor(mask).reshape(labels.shape)
            valid = mask != IGNORE_INDEX
            labelled += int(valid.sum())
            right_fp32 += int(((labels == mask) & valid).sum())
            right_int8 += int(((labels8 == mask) & valid).sum())
    if not images:
        return {}
    figures: dict[str, Any] = {"agreement": agree / pixels, "check_images": images, "check_pixels": pixels}
    if labelled:
        figures.update(accuracy_fp32=right_fp32 / labelled, accuracy_int8=right_int8 / labelled)
    return figures


def _reference(model: nn.Module):
    """The float32 model's logits on the CPU, without changing the caller's model."""
    on_cpu_fp32 = all(
        t.device.type == "cpu" and (not t.is_floating_point() or t.dtype == torch.float32)
        for t in (*model.parameters(), *model.buffers())
    )
    if not on_cpu_fp32:
        import copy

        model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)

    def run(x: torch.Tensor) -> torch.Tensor:
        was_training = model.training
        model.eval()
        try:
            out = model(x)
        finally:
            model.train(was_training)
        return out["out"] if isinstance(out, dict) else out

    return run


def _move_into_place(staging: Path, folder: Path, overwrite: bool) -> None:
    """Rename ``staging`` to ``folder``; an existing int8 folder is swapped out, then deleted.

    POSIX has no atomic exchange of two folders: the old folder is renamed aside first and
    put back if the second rename fails, so ``folder`` is missing only between two renames.
    """
    if not folder.exists():
        os.rename(staging, folder)  # fails rather than merge if a non-empty folder appeared meanwhile
        return
    check_target(folder, overwrite)
    old = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".old", dir=folder.parent))
    try:
        os.rename(folder, old)  # onto the empty placeholder mkdtemp made
        try:
            os.rename(staging, folder)
        except BaseException:
            os.rename(old, folder)
            raise
    finally:
        shutil.rmtree(old, ignore_errors=True)
