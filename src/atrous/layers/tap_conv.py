"""Atrous convolution as a sum of shifted 1×1 products, for CPUs where the direct kernel is slow.

A k×k convolution with dilation ``d`` and 'same' zero padding is linear in its input, so it
is the sum over its k² taps of a 1×1 convolution (one matrix product) shifted by the tap's
offset ``d·(i − k//2, j − k//2)``::

    y[p] = Σ_t W_t · x[p + d·o_t]  =  Σ_t z_t[p + d·o_t],    z_t = W_t · x

with ``z_t`` zero outside the image exactly where ``x`` is. All taps are one large matrix
product (``k²·C_out`` output channels) followed by k² shifted additions.

Why: oneDNN's bf16 (AMX) direct convolution has a slow path for large dilations with
many input channels. Measured on this project's 2-core AMX CPU with torch 2.15.0,
DeepLab v3's ASPP branch (2048 → 256, 3×3) at 64×64 takes 16 ms at dilation 1 or 2 but
96–194 ms at dilation 3–24; the tap form takes 25 ms at every dilation. With 512 or
1024 input channels the direct kernel is fast at every dilation. Which form wins depends
on the kernel library, so :class:`TapConv2d` times both once per input shape and keeps
the winner (like ``cudnn.benchmark``); see ``docs/benchmarks.md``.

A tap whose offset is at least the feature map's size reads only zero padding and is
skipped: DeepLab v3 §3.3 notes that as the rate approaches the feature map's size "the
3×3 filter degenerates to a simple 1×1 filter since only the center filter weight is
effective" — here that costs a 1×1 convolution, no more.
"""

from __future__ import annotations

import time

import torch
import torch.nn.functional as F
from torch import nn

# A tap form must beat the direct kernel by this factor to be chosen: near-ties keep the
# direct kernel, so the choice (and with it the last bits of bf16 results) is stable
# from one process to the next.
TAP_MARGIN = 1.5

_choices: dict[tuple, bool] = {}


def _live_taps(kernel: int, dilation: int, height: int, width: int) -> list[tuple[int, int, int]]:
    """(tap index, dy, dx) of every tap that reads at least one pixel inside the image."""
    half = kernel // 2
    taps = []
    for i in range(kernel):
        for j in range(kernel):
            dy, dx = (i - half) * dilation, (j - half) * dilation
            if abs(dy) < height and abs(dx) < width:
                taps.append((i * kernel + j, dy, dx))
    return taps


def conv2d_taps(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, dilation: int) -> torch.Tensor:
    """``F.conv2d(x, weight, bias, padding=dilation·(k//2), dilation=dilation)`` as shifted
    1×1 products; the shifted sums accumulate in at least float32 and are rounded once."""
    out_chs, in_chs, kernel, kernel_w = weight.shape
    if kernel != kernel_w or kernel % 2 == 0:
        raise ValueError(f"conv2d_taps needs a square, odd kernel; got {kernel}×{kernel_w}")
    batch, _, height, width = x.shape
    taps = _live_taps(kernel, dilation, height, width)
    # (k, k, out, in) → the live taps stacked as one 1×1 convolution's output channels
    per_tap = weight.permute(2, 3, 0, 1).reshape(kernel * kernel, out_chs, in_chs)
    stacked = per_tap[[t for t, _, _ in taps]].reshape(len(taps) * out_chs, in_chs, 1, 1)
    z = F.conv2d(x, stacked)
    layout = torch.channels_last if x.is_contiguous(memory_format=torch.channels_last) else torch.contiguous_format
    accumulate = torch.promote_types(z.dtype, torch.float32)  # bf16/fp16 sums in fp32, fp64 stays
    out = torch.zeros(batch, out_chs, height, width, dtype=accumulate, device=x.device).contiguous(memory_format=layout)
    for n, (_, dy, dx) in enumerate(taps):
        y0, y1 = max(0, -dy), min(height, height - dy)
        x0, x1 = max(0, -dx), min(width, width - dx)
        out[:, :, y0:y1, x0:x1] += z[:, n * out_chs : (n + 1) * out_chs, y0 + dy : y1 + dy, x0 + dx : x1 + dx]
    if bias is not None:
        out = out + bias.to(accumulate).view(1, -1, 1, 1)
    return out.to(z.dtype)


def tap_eligible(conv: nn.Module) -> bool:
    """A plain, ungrouped, stride-1, 'same'-padded, dilated odd k×k convolution."""
    if type(conv) is not nn.Conv2d:
        return False
    k, kw = conv.kernel_size
    d, dw = conv.dilation
    return (
        k == kw
        and k % 2 == 1
        and k > 1
        and d == dw
        and d > 1
        and conv.groups == 1
        and conv.stride == (1, 1)
        and conv.padding_mode == "zeros"
        and conv.padding == (d * (k // 2), d * (k // 2))
    )


class TapConv2d(nn.Conv2d):
    """An ``nn.Conv2d`` (same parameters and state dict) that, on the CPU, runs each input
    shape the faster of two exact ways: the direct kernel or :func:`conv2d_taps`.

    The choice is timed once per (shape, dtype, gradient mode) and cached for the
    process. Anywhere else — CUDA, tracing, ``torch.compile``, deterministic mode, a
    convolution that is no longer eligible — it is a plain ``nn.Conv2d``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._may_use_taps(x):
            return super().forward(x)
        dtype = torch.get_autocast_dtype("cpu") if torch.is_autocast_enabled("cpu") else x.dtype
        key = (tuple(x.shape), tuple(self.weight.shape), self.dilation[0], dtype, torch.is_grad_enabled())
        use_taps = _choices.get(key)
        if use_taps is None:
            use_taps = _choices[key] = self._taps_are_faster(x)
        if use_taps:
            return conv2d_taps(x, self.weight, self.bias, self.dilation[0])
        return super().forward(x)

    def _may_use_taps(self, x: torch.Tensor) -> bool:
        return (
            x.device.type == "cpu"
            and x.dim() == 4
            and not torch.jit.is_tracing()
            and not torch.compiler.is_compiling()
            and not torch.are_deterministic_algorithms_enabled()
            and self.padding == (self.dilation[0] * (self.kernel_size[0] // 2),) * 2
        )

    def _taps_are_faster(self, x: torch.Tensor) -> bool:
        with torch.no_grad():
            direct = _best_time(lambda: super(TapConv2d, self).forward(x))
            taps = _best_time(lambda: conv2d_taps(x, self.weight, self.bias, self.dilation[0]))
        return taps * TAP_MARGIN < direct


def _best_time(fn, repeats: int = 2) -> float:
    fn()  # first call: allocation, kernel selection
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def use_tap_convs(model: nn.Module) -> int:
    """Turn every eligible dilated convolution of ``model`` into a :class:`TapConv2d`, in
    place (the modules keep their identity and parameters). Returns how many."""
    count = 0
    for module in model.modules():
        if tap_eligible(module):
            module.__class__ = TapConv2d
            count += 1
    return count
