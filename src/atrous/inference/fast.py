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
* **autocast** to bf16 where the hardware computes it natively (AVX-512 BF16 / AMX CPUs,
  Ampere+ GPUs), fp16 on older GPUs.
* **Atrous convolutions as shifted 1×1 products** where that is faster on the CPU
  (:class:`~atrous.layers.TapConv2d`, timed once per input shape): exact up to summation
  order, and 4–7× faster than oneDNN's bf16 kernel for ASPP's large rates here.
"""

from __future__ import annotations

import copy
import itertools

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from ..layers.tap_conv import use_tap_convs

PRECISIONS = ("auto", "fp32", "bf16", "fp16")


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
    """The autocast dtype for ``precision`` on ``device``; ``None`` for full precision."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp32":
        return None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp16":
        if device.type != "cuda":
            raise ValueError("precision fp16 needs a CUDA device; use bf16 or fp32 on CPU")
        return torch.float16
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    from ..engine.trainer import cpu_has_native_bf16

    return torch.bfloat16 if device.type == "cpu" and cpu_has_native_bf16() else None


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
