"""Export a segmentation model to ONNX or to a ``torch.export`` program, with dynamic
batch, height and width.

::

    from atrous.export import export_model
    export_model(model, "model.onnx")                               # ONNX, opset 18
    export_model(model, "model.pt2", format="exported-program")     # torch.export.save

The model is traced once with ``torch.export`` (eval mode, float32, CPU) on an example
input whose batch, height and width are all symbolic, so the exported graph takes any
input size (``(batch, in_chans, height, width)`` → logits ``(batch, classes, height,
width)``). ONNX files are converted from that program by PyTorch's dynamo-based exporter
(``torch.onnx.export(..., dynamo=True)``); the axes are named ``batch``, ``height`` and
``width``, the input ``image`` and the output ``logits``.

Nothing broken is ever left at the target path: the file is written under a temporary
name in the target folder, checked, and only then renamed into place. The checks are
``onnx.checker`` (ONNX) and a numerical comparison with the PyTorch model at the example
size *and* at a second, different batch and size (``check_size``), run with ONNX Runtime
(when it is installed) or with the reloaded exported program. A comparison that exceeds
the tolerance, or a model that cannot be traced, raises :class:`ExportError` naming the
model and the reason.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
from torch import nn

from .models import task_of
from .utils.atomic import atomic_write

ExportFormat = Literal["onnx", "exported-program"]
FORMATS: tuple[str, ...] = ("onnx", "exported-program")
SUFFIXES = {"onnx": ".onnx", "exported-program": ".pt2"}

#: The ONNX opset files are written with: opset 18 runs on every current runtime (ONNX
#: Runtime ≥ 1.14, TensorRT ≥ 8.6, OpenVINO) and has every operator the models use.
DEFAULT_OPSET = 18
INPUT_NAME = "image"
OUTPUT_NAME = "logits"
DYNAMIC_AXES = {0: "batch", 2: "height", 3: "width"}

#: Tolerances of the check against PyTorch: |onnx − torch| ≤ atol + rtol·max|torch| on the
#: logits, and the per-pixel argmax equal on at least ``min_agreement`` of the pixels.
ATOL = 1e-3
RTOL = 1e-5
MIN_AGREEMENT = 0.999


class ExportError(RuntimeError):
    """The model could not be exported, or the exported file does not reproduce it."""


@dataclass(frozen=True)
class ExportCheck:
    """One comparison of the exported model with PyTorch on a random input."""

    input_shape: tuple[int, ...]
    max_abs_diff: float
    max_abs_logit: float
    argmax_agreement: float

    def __str__(self) -> str:
        shape = "×".join(str(s) for s in self.input_shape)
        return (
            f"input {shape}: max |Δlogit| {self.max_abs_diff:.2e} (logits up to {self.max_abs_logit:.3g}), "
            f"argmax agreement {100 * self.argmax_agreement:.3f} %"
        )


def default_path(model_dir: str | os.PathLike, format: ExportFormat = "onnx") -> Path:
    """``<model_dir>/model.onnx`` or ``<model_dir>/model.pt2``."""
    model_dir = Path(model_dir)
    folder = model_dir if model_dir.is_dir() else model_dir.parent
    return folder / f"model{SUFFIXES[_check_format(format)]}"


def export_model(
    model: nn.Module,
    path: str | os.PathLike,
    *,
    format: ExportFormat = "onnx",
    opset: int | None = None,
    example_size: tuple[int, int, int] = (2, 128, 160),
    check_size: tuple[int, int, int] | None = (1, 97, 131),
    verify: bool = True,
    checks: list[ExportCheck] | None = None,
) -> Path:
    """Export ``model`` to ``path`` with dynamic batch, height and width; return the path.

    Args:
        model: an atrous segmentation model (any ``nn.Module`` taking one (B, C, H, W)
            tensor and returning logits). It is exported in eval mode, in float32 on the
            CPU; a model on another device or in another dtype is copied, not changed.
        path: the file to write (its folder is created).
        format: ``"onnx"`` or ``"exported-program"`` (``torch.export.save``, a ``.pt2``
            file loaded with ``torch.export.load(path).module()``).
        opset: ONNX opset (default :data:`DEFAULT_OPSET`).
        example_size: (batch, height, width) of the tracing input. Its values do not
            limit the exported model's sizes.
        check_size: (batch, height, width) of the second check input; it should differ
            from ``example_size`` in every entry, so that the check proves the sizes are
            dynamic. ``None`` checks at the example size only.
        verify: compare the file with the PyTorch model before it is moved into place
            (ONNX: with ONNX Runtime when installed; ``onnx.checker`` always runs).
        checks: if given, each comparison made is appended to it.

    Raises:
        ExportError: the model cannot be exported, or the exported file disagrees with
            PyTorch; nothing is written at ``path`` then.
    """
    format = _check_format(format)
    if task_of(model) == "instance":
        raise ExportError(
            f"{model_name(model)} is an instance-segmentation model; export covers the semantic models (one "
            "tensor in, logits out). torchvision's Mask R-CNN takes a list of images and returns a list of dicts."
        )
    if opset is not None and format != "onnx":
        raise ValueError("opset applies to the onnx format only")
    if opset is not None and (isinstance(opset, bool) or not isinstance(opset, int) or opset < 1):
        raise ValueError(f"opset must be a positive integer, got {opset!r}")
    opset = DEFAULT_OPSET if opset is None else opset
    name = model_name(model)
    sizes = [tuple(int(s) for s in example_size)]
    if check_size is not None:
        sizes.append(tuple(int(s) for s in check_size))
    for size in sizes:
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"example_size and check_size are (batch, height, width) >= 1, got {size}")

    with _export_ready(model) as model:
        in_chans = _in_chans(model)
        generator = torch.Generator().manual_seed(0)
        inputs = [torch.randn(b, in_chans, h, w, generator=generator) for b, h, w in sizes]
        program = trace(model, inputs[0])
        path = Path(path)

        def write(tmp: str) -> None:
            if format == "onnx":
                _write_onnx(program, inputs[0], tmp, opset=opset, name=name, model=model)
                if verify:
                    _verify(name, model, inputs, _onnx_runner(tmp), checks)
            else:
                _write_exported_program(program, tmp, model=model)
                if verify:
                    with open(tmp, "rb") as f:  # a file object: the name does not end in .pt2
                        loaded = torch.export.load(f).module()
                    _verify(name, model, inputs, lambda x: loaded(x), checks)

        try:
            return atomic_write(path, write)
        except ExportError:
            raise
        except Exception as exc:
            raise ExportError(f"{name} cannot be exported to {format}: {_reason(exc)}") from exc


def trace(model: nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    """``torch.export.export`` with batch, height and width symbolic.

    Size-oblivious reasoning (where this PyTorch has it) keeps sizes 0 and 1 from being
    special-cased, so the program accepts tiny inputs too. Raises :class:`ExportError`
    when the model cannot be traced with dynamic sizes.
    """
    dim = torch.export.Dim.DYNAMIC
    dynamic_shapes = ({axis: dim for axis in DYNAMIC_AXES},)
    try:
        with torch.no_grad(), _size_oblivious():
            return torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes, strict=False)
    except Exception as exc:
        raise ExportError(
            f"{model_name(model)} cannot be exported with dynamic batch, height and width: {_reason(exc)}"
        ) from exc


def model_name(model: nn.Module) -> str:
    config = getattr(model, "config", None)
    if isinstance(config, dict) and config.get("name"):
        return str(config["name"])
    return type(model).__name__


def _check_format(format: str) -> str:
    if format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(FORMATS)}, got {format!r}")
    return format


def _in_chans(model: nn.Module) -> int:
    config = getattr(model, "config", None)
    if isinstance(config, dict) and "in_chans" in config:
        return int(config["in_chans"])
    return int(getattr(getattr(model, "backbone", None), "in_chans", 3))


@contextlib.contextmanager
def _export_ready(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode, float32, on the CPU: the model itself when it already is
    (its train/eval mode is restored afterwards), a copy otherwise."""
    on_cpu_fp32 = all(
        t.device.type == "cpu" and (not t.is_floating_point() or t.dtype == torch.float32)
        for t in (*model.parameters(), *model.buffers())
    )
    if not on_cpu_fp32:
        model = copy.deepcopy(model).to(device="cpu", dtype=torch.float32)
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def _size_oblivious() -> Iterator[None]:
    try:
        from torch.fx.experimental import _config as fx_config
    except ImportError:  # pragma: no cover - older PyTorch
        fx_config = None
    if fx_config is None or not hasattr(fx_config, "backed_size_oblivious"):  # pragma: no cover
        yield
        return
    with fx_config.patch(backed_size_oblivious=True):
        yield


def _metadata(model: nn.Module) -> dict[str, str]:
    config = getattr(model, "config", None)
    out = {"producer": "atrous"}
    if isinstance(config, dict):
        out["atrous_config"] = json.dumps(config, sort_keys=True, default=str)
    metadata = getattr(model, "metadata", None)
    if metadata:
        out["atrous_metadata"] = json.dumps(metadata, sort_keys=True, default=str)
    return out


def _write_onnx(
    program: torch.export.ExportedProgram, example: torch.Tensor, path: str, *, opset: int, name: str, model: nn.Module
) -> None:
    try:  # torch.onnx needs both; a clear message when one is missing
        import onnx
        import onnxscript  # noqa: F401
    except ImportError as exc:
        raise ExportError(
            f"exporting {name} to ONNX needs the onnx and onnxscript packages: pip install 'atrous[export]'"
        ) from exc
    newest = onnx.defs.onnx_opset_version()
    if opset > newest:
        raise ValueError(f"opset {opset} is newer than this onnx package knows (up to {newest})")
    onnx_program = torch.onnx.export(
        program,
        (example,),
        dynamo=True,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        external_data=False,
        optimize=True,
        verbose=False,
    )
    shape = onnx_program.model.graph.inputs[0].shape
    if hasattr(onnx_program, "rename_axes"):  # without it (older PyTorch) the axes keep symbol names
        onnx_program.rename_axes({shape[axis]: axis_name for axis, axis_name in DYNAMIC_AXES.items()})
    onnx_program.model.metadata_props.update(_metadata(model))
    onnx_program.save(path, external_data=False)
    onnx.checker.check_model(path, full_check=True)
    # Below 18 torch.onnx converts the graph down, and where it cannot it keeps 18 with a warning.
    written = {entry.domain: entry.version for entry in onnx.load(path, load_external_data=False).opset_import}
    if written.get("", written.get("ai.onnx")) != opset:
        raise ExportError(
            f"torch.onnx could not write {name} at opset {opset} (it wrote opset {written.get('', '?')}); "
            f"opset {DEFAULT_OPSET} or newer is written directly"
        )


def _write_exported_program(program: torch.export.ExportedProgram, path: str, *, model: nn.Module) -> None:
    extra = {"atrous_config.json": _metadata(model).get("atrous_config", "{}")}
    with open(path, "wb") as f:  # a file object: torch.export.save would want a .pt2 name
        torch.export.save(program, f, extra_files=extra)


def _onnx_runner(path: str):
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def run(x: torch.Tensor) -> torch.Tensor:
        return torch.from_numpy(session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0])

    return run


def compare(reference: torch.Tensor, output: torch.Tensor, input_shape: tuple[int, ...]) -> ExportCheck:
    """Max absolute difference and per-pixel argmax agreement of two (B, K, H, W) logits."""
    if tuple(output.shape) != tuple(reference.shape):
        raise ExportError(f"output shape {tuple(output.shape)} differs from PyTorch's {tuple(reference.shape)}")
    diff = (output.float() - reference.float()).abs().max().item()
    agreement = (output.argmax(1) == reference.argmax(1)).float().mean().item()
    return ExportCheck(tuple(input_shape), diff, reference.abs().max().item(), agreement)


def _verify(name, model, inputs, run, checks) -> None:
    if run is None:
        return
    for x in inputs:
        with torch.no_grad():
            reference = model(x)
            try:
                output = run(x)
            except Exception as exc:
                raise ExportError(
                    f"the exported {name} fails on an input of shape {tuple(x.shape)}: {_reason(exc)}"
                ) from exc
        try:
            check = compare(reference, output, tuple(x.shape))
        except ExportError as exc:
            raise ExportError(f"the exported {name} is wrong on an input of shape {tuple(x.shape)}: {exc}") from None
        if checks is not None:
            checks.append(check)
        if check.max_abs_diff > ATOL + RTOL * check.max_abs_logit or check.argmax_agreement < MIN_AGREEMENT:
            raise ExportError(f"the exported {name} does not reproduce PyTorch: {check}")


def _reason(exc: BaseException) -> str:
    """The first informative line of an exception (PyTorch's export errors are long)."""
    text = str(exc).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    summary = next((line for line in lines if line.startswith("<class")), None)
    first = summary or (lines[0] if lines else type(exc).__name__)
    return f"{type(exc).__name__}: {first}"[:500]
