"""Which ASPP branches still see anything: an adviser for input size and output stride.

DeepLab v3 §3.3 (Fig. 4) found that an atrous 3×3 branch whose rate approaches the
feature map's size loses its outer taps to zero padding and "degenerates to a simple 1×1
filter since only the center filter weight is effective". Whether that happens depends
on the input size and the output stride, which fix the feature size the ASPP sees. For
each output stride the model supports (8, 16, 32; ``model.set_output_stride``), this
module reports, branch by branch, with the feature map H×W:

* **degenerate** — ``rate ≥ max(H, W)``: every tap but the centre reads padding at every
  position, so the branch is exactly a 1×1 convolution (its centre-only share is 1);
* **weakened** — ``min(H, W) < 2·rate + 1``: no position sees all nine taps, every
  output mixes real features with padding (its full share is 0);
* **ok** — otherwise: the centre of the map sees the whole 3×3 filter.

Both follow from the valid-tap counts of :mod:`.valid_weights` ('same' padding; the
shares are given too), so the statuses and the shares cannot disagree. Also per output
stride: the FLOPs and the activation memory of one forward pass at this input size (the
walk of :mod:`.tracer` counts both, FLOPs with :func:`atrous.benchmark.flops.count_flops`),
and the smallest square input, a multiple of the output stride, that keeps every branch
non-degenerate and the one that keeps every branch unweakened. Those assume the feature
map is input/output-stride on a side, which holds for every backbone here at such sizes
(same-padded strided convolutions and poolings); :func:`advise` notes when the walk at
the requested size says otherwise.

What the papers did about it: DeepLab v3 §3.3 adds image-level features (global average
pooling, a 1×1 convolution, upsampling) as a branch of its own, and sets the rates with
the output stride — (6, 12, 18) at 16, doubled at 8 — so that every branch keeps its
field in pixels; the fourth branch of DeepLab v2's ASPP-L (rate 24 at output stride 8)
is not part of v3's module.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from ..layers import ASPP, ASPPSum
from .tracer import Trace, trace_model
from .valid_weights import place

STRIDES = (8, 16, 32)

V3_NOTE = (
    "DeepLab v3 §3.3 (Fig. 4): as the rate nears the feature size, a 3×3 atrous filter loses its outer taps to "
    "padding and degenerates to 1×1. The paper added an image-level branch (global average pooling → 1×1 conv "
    "→ upsampling) for whole-image context, scales the rates with the output stride ((6, 12, 18) at 16, doubled "
    "at 8), and its ASPP has no rate-24 branch (DeepLab v2's ASPP-L had one)."
)
V2_NOTE = (
    "DeepLab v2 §3.3 (ASPP-L, rates 6, 12, 18, 24 at output stride 8) sums its branches and has no image-level "
    "branch: a degenerate branch adds a 1×1 classifier, nothing more. DeepLab v3 §3.3 later added image "
    "pooling for the context the large rates cannot give."
)


@dataclass(frozen=True)
class BranchAdvice:
    """One atrous ASPP branch at one output stride."""

    module: str
    rate: int
    kernel: int
    feature: tuple[int, int]
    full_share: float  # positions that see all k² taps
    single_share: float  # positions that see only the centre tap
    status: str  # "ok", "weakened" or "degenerate"

    def as_dict(self) -> dict:
        return {
            "module": self.module,
            "rate": self.rate,
            "kernel": self.kernel,
            "feature": list(self.feature),
            "full_share": self.full_share,
            "centre_only_share": self.single_share,
            "status": self.status,
        }


@dataclass(frozen=True)
class StrideAdvice:
    """The model at one output stride, for the analysed input size."""

    output_stride: int
    available: bool
    reason: str = ""  # why not, when the model cannot run at this stride
    flops: int | None = None
    activation_bytes: int | None = None
    feature: tuple[int, int] | None = None  # what the ASPP sees
    branches: tuple[BranchAdvice, ...] = ()
    min_side_non_degenerate: int | None = None
    min_side_unweakened: int | None = None

    @property
    def worst(self) -> str:
        for status in ("degenerate", "weakened"):
            if any(b.status == status for b in self.branches):
                return status
        return "ok"

    def as_dict(self) -> dict:
        return {
            "output_stride": self.output_stride,
            "available": self.available,
            "reason": self.reason,
            "flops": self.flops,
            "activation_bytes": self.activation_bytes,
            "feature": list(self.feature) if self.feature else None,
            "branches": [b.as_dict() for b in self.branches],
            "min_side_non_degenerate": self.min_side_non_degenerate,
            "min_side_unweakened": self.min_side_unweakened,
        }


@dataclass(frozen=True)
class Advice:
    """The adviser's findings for one model and input size."""

    size: tuple[int, int]
    output_stride: int | None  # the stride the model is analysed at
    aspp: str | None  # the kind of ASPP, or None
    strides: tuple[StrideAdvice, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)

    def at(self, output_stride: int) -> StrideAdvice | None:
        return next((s for s in self.strides if s.output_stride == output_stride), None)

    def as_dict(self) -> dict:
        return {
            "size": list(self.size),
            "output_stride": self.output_stride,
            "aspp": self.aspp,
            "strides": [s.as_dict() for s in self.strides],
            "notes": list(self.notes),
        }


def status_of(rate: int, feature: Sequence[int]) -> str:
    """The section's definitions, written out (the shares say the same)."""
    if rate >= max(feature):
        return "degenerate"
    if min(feature) < 2 * rate + 1:
        return "weakened"
    return "ok"


def aspp_kind(model: nn.Module) -> str | None:
    kinds = []
    for module in model.modules():
        if isinstance(module, ASPP):
            kinds.append("DeepLab v3 ASPP (concatenated, with image pooling)")
        elif isinstance(module, ASPPSum):
            kinds.append("DeepLab v2 ASPP (summed)")
    return kinds[0] if kinds else None


def atrous_branches(model: nn.Module) -> list[str]:
    """Module paths of the atrous (3×3) branches of every ASPP in ``model``."""
    paths = []
    for name, module in model.named_modules():
        if isinstance(module, ASPP):
            paths += [f"{name}.convs.{i}" for i in range(1, len(module.convs) - 1)]
        elif isinstance(module, ASPPSum):
            paths += [f"{name}.branches.{i}" for i in range(len(module.branches))]
    return paths


def stride_traces(
    model: nn.Module, size: Sequence[int], strides: Sequence[int] = STRIDES, *, count_flops: bool = True
) -> dict[int, Trace | str]:
    """A walk (with FLOPs, unless ``count_flops`` is off) at each of ``strides`` the model
    takes, or why it does not take it; the model is left at the stride it had."""
    current = getattr(model, "output_stride", None)
    switch = getattr(model, "set_output_stride", None)
    traces: dict[int, Trace | str] = {}
    try:
        for stride in strides:
            if switch is None:
                if stride == current:
                    traces[stride] = trace_model(model, size, count_flops=count_flops)
                continue
            try:
                switch(stride)
            except ValueError as exc:
                traces[stride] = str(exc)
                continue
            traces[stride] = trace_model(model, size, count_flops=count_flops)
    finally:
        if switch is not None and current is not None:
            switch(current)
    return traces


def advise(model: nn.Module, size: Sequence[int], traces: dict[int, Trace | str] | None = None) -> Advice:
    """The adviser's report for ``model`` at input ``size`` (H, W); ``traces`` from
    :func:`stride_traces` if already walked."""
    size = (int(size[0]), int(size[1]))
    traces = stride_traces(model, size) if traces is None else traces
    kind = aspp_kind(model)
    paths = atrous_branches(model)
    strides = []
    notes: list[str] = []
    for stride in STRIDES:
        trace = traces.get(stride)
        if trace is None:
            continue
        if isinstance(trace, str):
            strides.append(StrideAdvice(stride, False, reason=trace))
            continue
        branches = tuple(b for b in (_branch(trace, path) for path in paths) if b is not None)
        feature = branches[0].feature if branches else None
        low = high = None
        if branches:
            largest = max(b.rate for b in branches)
            low, high = (largest + 1) * stride, (2 * largest + 1) * stride
            expected = tuple(math.ceil(s / stride) for s in size)
            if feature != expected:
                notes.append(
                    f"at output stride {stride} the ASPP sees {feature[0]}×{feature[1]}, not the "
                    f"{expected[0]}×{expected[1]} the smallest sizes assume"
                )
        strides.append(
            StrideAdvice(
                stride,
                True,
                flops=trace.flops,
                activation_bytes=trace.activation_bytes,
                feature=feature,
                branches=branches,
                min_side_non_degenerate=low,
                min_side_unweakened=high,
            )
        )
    if kind is None:
        notes.insert(0, "no ASPP: no branch to degenerate (dilated convolutions are on the valid-weight table)")
    else:
        notes.insert(0, V2_NOTE if "v2" in kind else V3_NOTE)
        if not paths:
            notes.insert(1, "this ASPP has no atrous branches (its 1×1 and image-pooling branches cannot degenerate)")
    return Advice(size, getattr(model, "output_stride", None), kind, tuple(strides), tuple(notes))


def _branch(trace: Trace, path: str) -> BranchAdvice | None:
    """The branch's atrous convolution: the first one the branch ran."""
    conv = next((c for c in trace.convs if c.module == path or c.module.startswith(path + ".")), None)
    if conv is None:
        return None
    p = place(conv.module, conv.kernel, conv.dilation, conv.in_size, padding=conv.padding, stride=conv.stride)
    rate = int(conv.dilation[0])
    status = "degenerate" if p.single_share == 1.0 else "weakened" if p.full_share == 0.0 else "ok"
    return BranchAdvice(path, rate, int(conv.kernel[0]), conv.in_size, p.full_share, p.single_share, status)
