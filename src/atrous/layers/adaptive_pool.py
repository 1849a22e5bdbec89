"""Adaptive average pooling written as two matrix products, so it exports with any input size.

``F.adaptive_avg_pool2d`` to a b×b grid (b > 1) has no ONNX operator when the input's
height and width are only known at run time: the pooling windows depend on them. Here
the windows become matrices built from the (possibly symbolic) input size: row *i* of
``P_h`` (b × H) averages rows ``[floor(i·H/b), ceil((i+1)·H/b))`` — PyTorch's own
adaptive-pooling boundaries — and the pooled map is ``P_h @ x @ P_wᵀ``. It equals
``F.adaptive_avg_pool2d`` to float rounding for every size, including sizes smaller than
the number of bins (windows then overlap or repeat, as PyTorch's do).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def adaptive_pool_matrix(
    in_size: int, bins: int, *, dtype: torch.dtype = torch.float32, device: torch.device | None = None
) -> torch.Tensor:
    """The (bins, in_size) matrix whose row *i* averages PyTorch's adaptive window *i*."""
    i = torch.arange(bins, device=device)
    start = (i * in_size) // bins  # floor(i·H/b)
    end = ((i + 1) * in_size + bins - 1) // bins  # ceil((i+1)·H/b)
    pos = torch.arange(in_size, device=device)
    inside = (pos[None, :] >= start[:, None]) & (pos[None, :] < end[:, None])
    return inside.to(dtype) / (end - start).to(dtype)[:, None]


def adaptive_avg_pool2d_export(x: torch.Tensor, output_size: int | tuple[int, int]) -> torch.Tensor:
    """``F.adaptive_avg_pool2d(x, output_size)`` for a (…, H, W) tensor, as ``P_h @ x @ P_wᵀ``.

    Traces to plain ``MatMul`` with ``torch.export`` and ONNX when H and W are dynamic.
    Half-precision inputs, and any input under autocast (which would run the products in
    half precision), are pooled in float32 and returned in their own dtype, as
    ``F.adaptive_avg_pool2d`` does: the weights 1/k are not rounded to 8 or 11 bits.
    """
    bins_h, bins_w = (output_size, output_size) if isinstance(output_size, int) else output_size
    autocast = x.device.type in ("cpu", "cuda") and torch.is_autocast_enabled(x.device.type)  # not on meta
    if x.dtype in (torch.float16, torch.bfloat16) or autocast:
        with torch.autocast(x.device.type, enabled=False):
            return _pool(x.float(), bins_h, bins_w).to(x.dtype)
    return _pool(x, bins_h, bins_w)


def _pool(x: torch.Tensor, bins_h: int, bins_w: int) -> torch.Tensor:
    h, w = x.shape[-2:]
    p_h = adaptive_pool_matrix(h, bins_h, dtype=x.dtype, device=x.device)
    p_w = adaptive_pool_matrix(w, bins_w, dtype=x.dtype, device=x.device)
    return torch.matmul(torch.matmul(p_h, x), p_w.transpose(0, 1))


def is_exporting() -> bool:
    """Whether the model is being traced for export (torch.export, ONNX, TorchScript tracing)."""
    return torch.compiler.is_exporting() or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()


class ExportableAdaptiveAvgPool2d(nn.AdaptiveAvgPool2d):
    """``nn.AdaptiveAvgPool2d`` that pools by :func:`adaptive_avg_pool2d_export` while the
    model is being exported, and by PyTorch's own kernel otherwise.

    A drop-in replacement (same ``output_size`` attribute, no parameters, same state-dict
    keys) whose output size is an integer or a pair of integers (no ``None``). In eager
    mode the native kernel is used because it is much faster on channels_last and
    half-precision inputs (the matrix form copies every channel); both agree to float
    rounding (tested).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if is_exporting():
            return adaptive_avg_pool2d_export(x, self.output_size)
        return F.adaptive_avg_pool2d(x, self.output_size)
