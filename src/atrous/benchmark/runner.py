"""One model's benchmark: the same code paths ``atrous predict`` and ``atrous train`` run.

* ``mode="infer"``: the :class:`~atrous.inference.Predictor`'s model path
  (:func:`~atrous.inference.fast.inference_path`). With ``precision="fp32"`` the model
  runs as built (eval, NCHW, float32); otherwise the fast path (conv-BN folded,
  channels_last, atrous convolutions free to run as shifted 1×1 products) in the
  precision ``auto`` measures to be fastest here (or the one named), in
  ``torch.inference_mode``; ``int8`` runs the model ``atrous quantize`` wrote.
* ``mode="train"``: the :class:`~atrous.engine.trainer.Trainer`'s step: channels_last,
  autocast as ``train.amp`` resolves the precision (``auto`` by measurement, ``fp32`` =
  off), the tap form of atrous convolutions on the CPU, cross-entropy, SGD with momentum
  as :func:`~atrous.engine.optim.build_optimizer` builds it (fused where supported).

Models are atrous registry names, ``torchvision:NAME`` (torchvision's own model of that
name with random weights, for side-by-side runs; nothing is downloaded), or a trained
model on disk (a run folder, a saved model, an int8 folder).
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..engine.amp import choose_training_precision, probe_shape, semantic_probe
from ..engine.optim import build_optimizer
from ..inference.fast import inference_path, is_int8_model
from ..inference.int8 import fp32_architecture
from ..inference.memory import peak_bytes_during
from ..layers.tap_conv import use_tap_convs
from ..models import create_model, task_of
from .ceiling import conv_ceiling
from .flops import count_flops
from .timing import median, time_interleaved

MODES = ("infer", "train")
PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
TORCHVISION_PREFIX = "torchvision:"


@dataclass
class BenchResult:
    model: str
    mode: str
    device: str
    precision: str  # as resolved: fp32, bf16, fp16 or int8
    batch: int
    size: int
    params: int
    gflops: float  # per call (one forward, or one training step), whole batch
    latency_s: float  # median
    latencies_s: list[float]
    images_per_s: float
    peak_memory_bytes: int
    achieved_gflops_per_s: float
    ceiling_gflops_per_s: float
    decision: str = ""  # how the precision was chosen, with the probe's figures
    layout: str = "NCHW"

    @property
    def ceiling_fraction(self) -> float:
        return self.achieved_gflops_per_s / self.ceiling_gflops_per_s

    def as_dict(self) -> dict:
        return asdict(self) | {"ceiling_fraction": self.ceiling_fraction}


def build_bench_model(
    name: str, *, num_classes: int = 21, output_stride: int | None = None, precision: str = "auto"
) -> nn.Module:
    """An atrous registry model, ``torchvision:NAME`` built by torchvision (random weights),
    or a trained model on disk (a run folder, saved model or int8 folder; ``precision="int8"``
    loads a run's int8 model)."""
    from ..models import list_models

    if name not in list_models() and not name.startswith(TORCHVISION_PREFIX) and os.path.exists(name):
        from ..inference.loading import load_inference_model

        model = load_inference_model(name, precision)
        if task_of(model) != "semantic":
            raise ValueError(f"{name} is an instance-segmentation model; atrous bench measures semantic models")
        if output_stride is not None:
            if is_int8_model(model):
                raise ValueError("--output-stride cannot change an int8 model (quantize the model at that stride)")
            model.set_output_stride(output_stride)
        return model
    if precision == "int8":
        raise ValueError(f"precision int8 needs a run folder with an int8 model (atrous quantize), got {name!r}")
    if name.startswith(TORCHVISION_PREFIX):
        from torchvision.models import get_model, list_models
        from torchvision.models import segmentation as tv_segmentation

        bare = name[len(TORCHVISION_PREFIX) :]
        available = list_models(module=tv_segmentation)
        if bare not in available:
            raise ValueError(f"unknown torchvision segmentation model {name!r}; available: {', '.join(available)}")
        if output_stride not in (None, 8):
            raise ValueError(
                f"{name} has a fixed output stride of 8 in torchvision; got --output-stride {output_stride}"
            )
        return get_model(bare, weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=False)
    from ..models import model_task

    if model_task(name) != "semantic":
        raise ValueError(f"{name} is an instance-segmentation model; atrous bench measures semantic models")
    kwargs = {} if output_stride is None else {"output_stride": output_stride}
    return create_model(name, num_classes=num_classes, **kwargs)


def _logits(output) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


def check_precision(mode: str, precision: str, device: torch.device) -> None:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    if precision == "int8" and (mode != "infer" or device.type != "cpu"):
        raise ValueError("precision int8 is for inference on the CPU")


@dataclass
class Step:
    """One benchmark call, as atrous runs it, and what it resolved to."""

    run: Callable[[], object]
    precision: str  # fp32, bf16, fp16 or int8
    dtype: torch.dtype | None
    channels_last: bool
    decision: str


def step_function(
    model: nn.Module,
    *,
    mode: str,
    precision: str,
    device: torch.device,
    batch: int,
    size: int,
    num_classes: int,
    seed: int = 0,
) -> Step:
    """A no-argument callable running one inference (or one training step) of ``model``
    prepared as atrous runs it, on fixed random data, and the precision it resolved to."""
    check_precision(mode, precision, device)
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, 3, size, size, generator=generator).to(device)
    if mode == "infer":
        path = inference_path(model.to(device).eval(), device, precision)

        def infer() -> torch.Tensor:
            with torch.inference_mode():
                return path(x)

        return Step(infer, path.precision, path.dtype, path.channels_last, path.choice.summary())

    model = model.to(device).train().to(memory_format=torch.channels_last)
    if device.type == "cpu":
        use_tap_convs(model)
    shape = probe_shape(batch, size, size)
    choice = choose_training_precision(
        "off" if precision == "fp32" else precision,
        device,
        model,
        semantic_probe(shape, num_classes, device, channels_last=True),
        shape,
    )
    dtype = choice.dtype
    target = torch.randint(0, num_classes, (batch, size, size), generator=generator).to(device)
    x = x.contiguous(memory_format=torch.channels_last)
    optimizer = build_optimizer(model, "sgd", lr=1e-3, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=dtype is torch.float16)
    autocast = torch.autocast(device.type, dtype=dtype) if dtype is not None else nullcontext()

    def train_step() -> torch.Tensor:
        with autocast:
            loss = F.cross_entropy(_logits(model(x)), target)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return Step(train_step, choice.precision, dtype, True, choice.summary())


def _flops(model: nn.Module, mode: str, batch: int, size: int, num_classes: int) -> int:
    """Counted on a plain float32 copy on the CPU (FLOPs do not depend on precision)."""
    plain = copy.deepcopy(model).cpu().float()
    x = torch.zeros(batch, 3, size, size)
    if mode == "infer":
        plain.eval()
        with torch.no_grad():
            return count_flops(lambda: plain(x))
    plain.train()
    target = torch.zeros(batch, size, size, dtype=torch.long)
    return count_flops(lambda: F.cross_entropy(_logits(plain(x)), target).backward())


def _state_bytes(model: nn.Module, optimizer_state: bool) -> int:
    tensors = [*model.parameters(), *model.buffers()]
    total = sum(t.numel() * t.element_size() for t in tensors)
    return total * (2 if optimizer_state else 1)  # SGD momentum: one buffer per parameter


def bench_model(
    name: str,
    *,
    mode: str = "infer",
    precision: str = "auto",
    device: str | torch.device = "cpu",
    batch: int = 1,
    size: int = 512,
    repeats: int = 10,
    warmup: int = 2,
    num_classes: int = 21,
    output_stride: int | None = None,
    ceiling: float | Callable[[str, bool], float] | None = None,
) -> BenchResult:
    """Parameters, FLOPs, median latency, throughput, peak memory and the fraction of
    this machine's measured ceiling for one model. ``ceiling`` (GFLOP/s) may be passed
    in, or a function of (precision, channels_last) that measures and remembers it."""
    if batch < 1 or size < 32:
        raise ValueError(f"batch must be >= 1 and size >= 32, got batch={batch}, size={size}")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but CUDA is not available on this machine")
    check_precision(mode, precision, device)
    torch.manual_seed(0)
    model = build_bench_model(name, num_classes=num_classes, output_stride=output_stride, precision=precision)
    counted = fp32_architecture(model)
    params = sum(p.numel() for p in counted.parameters())
    flops = _flops(counted, mode, batch, size, num_classes)
    step = step_function(
        model, mode=mode, precision=precision, device=device, batch=batch, size=size, num_classes=num_classes
    )
    latencies = time_interleaved({name: step.run}, repeats=repeats, warmup=warmup, device=device)[name]
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        step.run()
        peak = torch.cuda.max_memory_allocated(device)
    elif is_int8_model(model):
        peak = 0  # OpenVINO's memory is outside torch's view: not measured
    else:
        peak = _state_bytes(model, optimizer_state=mode == "train") + peak_bytes_during(step.run)
    latency = median(latencies)
    if ceiling is None:
        ceiling = conv_ceiling(device, step.dtype, channels_last=step.channels_last, train=mode == "train")
    elif callable(ceiling):
        ceiling = ceiling(step.precision, step.channels_last)
    return BenchResult(
        model=name,
        mode=mode,
        device=str(device),
        precision=step.precision,
        batch=batch,
        size=size,
        params=params,
        gflops=flops / 1e9,
        latency_s=latency,
        latencies_s=latencies,
        images_per_s=batch / latency,
        peak_memory_bytes=int(peak),
        achieved_gflops_per_s=flops / latency / 1e9,
        ceiling_gflops_per_s=ceiling,
        decision=step.decision,
        layout="NHWC" if step.channels_last else "NCHW",
    )
