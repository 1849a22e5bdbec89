"""The inference fast path: conv-BN folding, channels_last, reduced-precision autocast.

Each step is exact or nearly so, and each is checked by the tests against the plain fp32
model:

* **Conv-BN folding.** In evaluation a batch norm is an affine map per channel, so the
  convolution in front of it can absorb it (``W' = W·γ/σ``, ``b' = (b − μ)·γ/σ + β``):
  one pass over memory less per layer. A convolution is folded with the norm that follows
  it in an ``nn.Sequential`` (``ConvNormAct``, ``downsample``, U-Net's double
  convolutions) or that sits beside it as ``convX``/``bnX`` (ResNet units), ``conv``/``bn``
  or ``conv_dw``/``bn_dw``, ``conv_pw``/``bn_pw`` (separable convolutions), which is how
  every atrous module pairs them. The norm becomes ``nn.Identity``.
* **channels_last** (NHWC): the layout oneDNN and cuDNN convolutions prefer.
* **autocast** to bf16 (or fp16 on a GPU) where that is measured to be faster on this
  machine and to give the fp32 model's labels (:func:`inference_path` with
  ``precision="auto"``, decided by :mod:`atrous.runtime` and cached per machine).
* **Atrous convolutions as shifted 1×1 products** where that is faster on the CPU
  (:class:`~atrous.layers.TapConv2d`, timed once per input shape): exact up to summation
  order, and 4–7× faster than oneDNN's bf16 kernel for ASPP's large rates here.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..layers.tap_conv import use_tap_convs
from ..runtime import DTYPES, PrecisionChoice, choose_precision, model_signature, precision_dtype

PRECISIONS = ("auto", "fp32", "bf16", "fp16", "int8")
#: The side of the square probe on which ``auto`` times the candidate paths.
PROBE_SIZE = 256


def _foldable(conv: nn.Module, bn: nn.Module) -> bool:
    return (
        isinstance(conv, nn.Conv2d)
        and isinstance(bn, nn.BatchNorm2d)  # PooledBatchNorm2d included
        and bn.track_running_stats
        and conv.out_channels == bn.num_features
    )


def fold_conv_bn(model: nn.Module) -> int:
    """Fold every batch norm into the convolution before it, in place (eval mode only).

    Returns the number of folded pairs.
    """
    if model.training:
        raise ValueError("fold_conv_bn needs a model in eval mode (folding uses the running statistics)")
    folded = 0
    for module in list(model.modules()):
        if isinstance(module, nn.Sequential):
            names = list(module._modules)
            for first, second in itertools.pairwise(names):
                conv, bn = module._modules[first], module._modules[second]
                if _foldable(conv, bn):
                    module._modules[first] = fuse_conv_bn_eval(conv, bn)
                    module._modules[second] = nn.Identity()
                    folded += 1
            continue
        for name, child in list(module._modules.items()):
            if not name.startswith("conv") or not isinstance(child, nn.Conv2d):
                continue
            bn_name = "bn" + name[len("conv") :]
            bn = module._modules.get(bn_name)
            if bn is not None and _foldable(child, bn):
                module._modules[name] = fuse_conv_bn_eval(child, bn)
                module._modules[bn_name] = nn.Identity()
                folded += 1
    return folded


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for an explicit ``precision`` on ``device`` (``None``: full
    precision). ``auto`` depends on the model: see :func:`inference_path`."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision in ("auto", "int8"):
        raise ValueError(f"precision {precision!r} is resolved per model by inference_path(model, device, precision)")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
    return precision_dtype(precision)


def fast_model(
    model: nn.Module, *, channels_last: bool = True, compile: bool = False, dtype: torch.dtype | None = None
) -> nn.Module:
    """A folded, channels_last (optionally compiled) copy of ``model`` in eval mode, its
    dilated convolutions free to run as shifted 1×1 products; the original is untouched.

    ``dtype``: the autocast dtype the copy will run under. Its convolutions' weights are
    cast to it once here, which autocast would otherwise do on every call (the same
    rounding, so the same results; for PSPNet's 4096→512 3×3 head alone that is a 75 MB
    copy per image). The copy must then be run under that autocast.
    """
    fast = copy.deepcopy(model).eval()
    fold_conv_bn(fast)
    use_tap_convs(fast)
    if dtype is not None:
        for module in fast.modules():
            if isinstance(module, nn.Conv2d | nn.ConvTranspose2d):
                module.to(dtype)
    if channels_last:
        fast = fast.to(memory_format=torch.channels_last)
    if compile:
        fast = torch.compile(fast, dynamic=True)
    return fast


def is_int8_model(model: nn.Module) -> bool:
    """An int8 model written by ``atrous quantize`` (it runs as it is, on the CPU)."""
    return getattr(model, "precision", None) == "int8"


def _logits(output) -> torch.Tensor:
    return output["out"] if isinstance(output, dict) else output


@dataclass
class InferencePath:
    """How a model is run for inference: the module, the autocast dtype, the input layout,
    and the precision decision with its figures."""

    model: nn.Module
    dtype: torch.dtype | None
    channels_last: bool
    choice: PrecisionChoice

    @classmethod
    def as_given(cls, model: nn.Module, dtype: torch.dtype | None = None) -> InferencePath:
        """``model`` run as it is (NCHW), under ``dtype`` autocast when one is given: a
        training model evaluated mid-run."""
        precision = next(name for name, d in DTYPES.items() if d == dtype)
        return cls(model, dtype, False, PrecisionChoice(precision, "as given"))

    @property
    def precision(self) -> str:
        return self.choice.precision

    def autocast(self, device: torch.device):
        return torch.autocast(device.type, dtype=self.dtype) if self.dtype is not None else nullcontext()

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.autocast(x.device):
            return _logits(self.model(x))


def probe_input(size: int = PROBE_SIZE, device: torch.device | str = "cpu") -> torch.Tensor:
    """A deterministic image-like probe (1, 3, size, size): smooth regions and edges at
    the scale of normalised pixels, not white noise (which no model was trained on)."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.randn(1, 3, 8, 8, generator=generator)
    smooth = F.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    return (smooth + 0.1 * torch.randn(1, 3, size, size, generator=generator)).to(device)


def inference_path(
    model: nn.Module,
    device: torch.device | str,
    precision: str = "auto",
    *,
    compile: bool = False,
    use_cache: bool = True,
    timer: Callable[[], float] = time.perf_counter,
) -> InferencePath:
    """Prepare ``model`` (already on ``device``, in eval mode) for inference.

    * ``fp32``: the model exactly as given (NCHW, float32) — the reference.
    * ``bf16`` / ``fp16``: the fast copy (:func:`fast_model`) under that autocast.
    * ``int8``: an int8 model from ``atrous quantize``, run as it is.
    * ``auto``: the fast copy in fp32 or under bf16/fp16 autocast, whichever
      :func:`atrous.runtime.choose_precision` measures to be fastest on this machine with
      the fp32 model's labels on a :func:`probe_input` (cached per machine, model and
      torch version). An int8 model runs as it is.
    """
    device = torch.device(device)
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if is_int8_model(model) or precision == "int8":
        if not is_int8_model(model):
            raise ValueError("precision int8 needs an int8 model: run `atrous quantize RUN` and load RUN/int8")
        if precision not in ("auto", "int8"):
            raise ValueError(f"an int8 model runs in int8; precision {precision!r} does not apply to it")
        return InferencePath(model, None, False, PrecisionChoice("int8", "an atrous quantize model, run as it is"))
    if precision != "auto":
        dtype = resolve_precision(precision, device)
        if dtype is None:
            return InferencePath(model, None, False, PrecisionChoice("fp32", "requested"))
        return InferencePath(
            fast_model(model, compile=compile, dtype=dtype), dtype, True, PrecisionChoice(precision, "requested")
        )

    x = probe_input(device=device)
    built: dict[str, nn.Module] = {}

    def build(names: list[str]) -> dict[str, Callable[[], torch.Tensor]]:
        runs = {}
        for name in names:
            built[name] = fast_model(model, dtype=precision_dtype(name))
            runs[name] = _probe_run(
                InferencePath(built[name], precision_dtype(name), True, PrecisionChoice(name, "")), x
            )
        return runs

    def reference() -> torch.Tensor:
        plain = copy.deepcopy(model)  # the caller's model sees no probe (it may count its calls)
        with torch.inference_mode():
            return _logits(plain(x))

    choice = choose_precision(
        "infer",
        device,
        model_signature(model, weights=True),
        list(x.shape),
        build,
        reference=reference,
        timer=timer,
        use_cache=use_cache,
    )
    fast = built.get(choice.precision) or fast_model(model, dtype=choice.dtype)
    if compile:
        fast = torch.compile(fast, dynamic=True)
    return InferencePath(fast, choice.dtype, True, choice)


def _probe_run(path: InferencePath, x: torch.Tensor) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.inference_mode():
            return path(x)

    return run
