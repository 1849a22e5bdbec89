"""Run an int8 model folder written by ``atrous quantize`` with OpenVINO on the CPU.

::

    from atrous.inference.int8 import Int8Model
    model = Int8Model.load("runs/voc/int8")
    logits = model(x)  # x: float32 (B, 3, H, W), normalised as the source model's metadata says

An int8 model folder holds ``model.xml`` + ``model.bin`` (the OpenVINO IR, int8 weights
and activation quantizers, dynamic batch, height and width) and ``int8.json`` (the source
model's name, classes, output stride and metadata, and how it was calibrated; see
:mod:`atrous.quantize`). :class:`Int8Model` is an ``nn.Module`` without parameters that
carries the attributes the rest of atrous reads from a segmentation model
(``num_classes``, ``output_stride``, ``metadata``, ``config``, ``task``), so predictors,
``atrous predict`` and ``atrous bench`` run it like any other model — on the CPU only.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..models.segmentor import check_input

MODEL_XML = "model.xml"
MODEL_BIN = "model.bin"
INFO_NAME = "int8.json"
#: The fields :meth:`Int8Model.load` needs from ``int8.json``.
REQUIRED_FIELDS = ("source", "num_classes", "output_stride", "metadata")
INSTALL_HINT = "pip install 'atrous[int8]'"


def import_openvino() -> Any:
    """The ``openvino`` module, or a ValueError saying how to install it."""
    try:
        import openvino
    except ImportError as exc:
        raise ValueError(f"int8 models run on OpenVINO, which is not installed here: {INSTALL_HINT}") from exc
    return openvino


def fp32_architecture(model: nn.Module) -> nn.Module:
    """The float32 network behind ``model``: an int8 model's source architecture, rebuilt from
    its recorded config (freshly initialised) at the stride it was quantized at; any other
    model itself. What is counted where OpenVINO's own work cannot be: parameters, FLOPs,
    and the working memory a forward pass plans with."""
    if getattr(model, "precision", None) != "int8":
        return model
    from ..models import model_from_config

    source = model_from_config(model.config).eval()
    if source.output_stride != model.output_stride:
        source.set_output_stride(model.output_stride)
    return source


def read_info(folder: str | os.PathLike) -> dict[str, Any]:
    """``folder/int8.json``, checked for the fields a model needs."""
    path = Path(folder) / INFO_NAME
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist; expected an int8 model folder written by atrous quantize")
    try:
        info = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path} is not valid JSON ({exc}); write the int8 model again with atrous quantize") from exc
    missing = [key for key in REQUIRED_FIELDS if not isinstance(info, dict) or key not in info]
    if missing:
        raise ValueError(f"{path} lacks {', '.join(missing)}; write the int8 model again with atrous quantize")
    return info


class Int8Model(nn.Module):
    """An int8 segmentation model run by OpenVINO on the CPU.

    ``forward(x)`` takes a float (B, C, H, W) CPU tensor of any batch, height, width,
    dtype and memory format, and returns float32 logits (B, classes, H, W) on the CPU.
    The network is compiled once, at load, for latency with ``torch.get_num_threads()``
    threads (or ``num_threads``); OpenVINO picks the int8 kernels the CPU has (AVX-512
    VNNI, AMX-INT8, AVX2).

    Build it with :meth:`load`. It has no parameters, so ``.eval()``, ``.train()`` and
    ``.to("cpu")`` change nothing; ``.to("cuda")``, another dtype, or an input on a GPU
    raise ValueError.

    Attributes:
        num_classes, output_stride, metadata, config: the source model's (``metadata``
            exactly as ``model.metadata`` was: class names, palette, mean, std …;
            ``config`` its build arguments, name included).
        source: the source model's name.
        folder: the folder it was loaded from.
        info: the whole ``int8.json`` (calibration, agreement, versions).
    """

    task = "semantic"
    precision = "int8"

    def __init__(self, compiled: Any, info: dict[str, Any], folder: Path) -> None:
        super().__init__()
        self._compiled = compiled
        self._request = compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: calls from several threads take turns
        self.info = info
        self.folder = folder
        self.source = str(info["source"])
        self.metadata: dict[str, Any] = info["metadata"]
        self.config: dict[str, Any] = dict(info.get("config") or {"name": self.source})
        self._num_classes = int(info["num_classes"])
        self._output_stride = int(info["output_stride"])
        self.in_chans = int(self.config.get("in_chans", 3))

    @classmethod
    def load(cls, folder: str | os.PathLike, *, num_threads: int | None = None) -> Int8Model:
        """Read and compile the int8 model in ``folder`` (``model.xml``, ``model.bin``, ``int8.json``).

        Raises:
            FileNotFoundError: the folder or one of its files is missing.
            ValueError: a file is corrupt, or OpenVINO is not installed.
        """
        folder = Path(folder)
        if not folder.is_dir():
            raise FileNotFoundError(f"int8 model folder {folder} does not exist (write one with atrous quantize)")
        info = read_info(folder)
        xml, weights = folder / MODEL_XML, folder / MODEL_BIN
        for path in (xml, weights):
            if not path.is_file():
                raise FileNotFoundError(f"{path} does not exist; write the int8 model again with atrous quantize")
        ov = import_openvino()
        core = ov.Core()
        threads = int(num_threads or torch.get_num_threads())
        try:
            network = core.read_model(str(xml), str(weights))
            compiled = core.compile_model(
                network, "CPU", {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
            )
        except RuntimeError as exc:  # OpenVINO reports unreadable IR and short weights as RuntimeError
            raise ValueError(
                f"OpenVINO cannot load {xml} with {weights.name} ({_reason(exc)}); the folder is damaged: "
                "write it again with atrous quantize --overwrite"
            ) from exc
        _check_outputs(compiled, info, xml)
        return cls(compiled, info, folder)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    @property
    def output_stride(self) -> int:
        return self._output_stride

    def set_output_stride(self, output_stride: int) -> None:
        """The int8 network is fixed at the stride it was quantized at."""
        if output_stride != self._output_stride:
            raise ValueError(
                f"an int8 model runs at the output stride it was quantized at ({self._output_stride}); "
                f"quantize the model again at output stride {output_stride}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_chans)
        if x.device.type != "cpu":
            raise ValueError(f"an int8 model runs on the CPU (OpenVINO); the input is on {x.device}: pass x.cpu()")
        # OpenVINO reads plain NCHW float32 memory: channels_last or other dtypes are copied.
        array = x.detach().to(torch.float32).contiguous().numpy()
        with self._lock:
            # share_outputs=False: the result is a fresh array, not the request's buffer
            # that the next call overwrites.
            result = self._request.infer({0: array}, share_inputs=True, share_outputs=False)
        return torch.from_numpy(result[0])

    def to(self, *args: Any, **kwargs: Any) -> Int8Model:
        device, dtype, _, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None and torch.device(device).type != "cpu":
            raise ValueError(f"an int8 model runs on the CPU (OpenVINO); it cannot move to {device}")
        if dtype is not None and dtype != torch.float32:
            raise ValueError(f"an int8 model takes and returns float32; it cannot be converted to {dtype}")
        return self

    def cuda(self, device: Any = None) -> Int8Model:
        raise ValueError("an int8 model runs on the CPU (OpenVINO); it cannot move to CUDA")

    def extra_repr(self) -> str:
        folder = str(self.folder)
        return f"source={self.source}, num_classes={self.num_classes}, output_stride={self.output_stride}, {folder=}"


def load_int8_model(folder: str | os.PathLike, *, num_threads: int | None = None) -> Int8Model:
    """:meth:`Int8Model.load`."""
    return Int8Model.load(folder, num_threads=num_threads)


def _check_outputs(compiled: Any, info: dict[str, Any], xml: Path) -> None:
    """One output whose class axis matches ``int8.json`` (a folder mixed from two models fails here)."""
    outputs = compiled.outputs
    if len(outputs) != 1:
        raise ValueError(f"{xml} has {len(outputs)} outputs; an atrous int8 model has one (the logits)")
    shape = outputs[0].get_partial_shape()
    classes = shape[1] if shape.rank.is_static and shape.rank.get_length() == 4 else None
    if classes is None or not classes.is_static or classes.get_length() != int(info["num_classes"]):
        raise ValueError(
            f"{xml} outputs shape {shape}, but {INFO_NAME} says (batch, {info['num_classes']}, height, width); "
            "write the int8 model again with atrous quantize --overwrite"
        )


def _reason(exc: BaseException) -> str:
    """OpenVINO's errors start with where they were raised and end with why: the last line."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return (lines[-1] if lines else type(exc).__name__)[:300]
