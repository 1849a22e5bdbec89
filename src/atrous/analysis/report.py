"""All four analyses of one model at one input size, as one record: :func:`analyze`.

One walk per output stride (:func:`.advisor.stride_traces`, on ``meta``) gives the
adviser its FLOPs and memory; the walk at the analysed stride also gives the receptive
fields and the dilated convolutions' placements. The effective receptive fields run on
the CPU with real weights: trained ones when the model was loaded from disk, and a
randomly initialised twin for comparison.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from torch import nn

from .advisor import STRIDES, Advice, advise, stride_traces
from .effective_rf import EffectiveField, effective_receptive_fields
from .receptive_field import FieldRow, receptive_fields
from .source import AnalysisModel
from .tracer import Trace, trace_model
from .valid_weights import Placement, ValidWeightCurve, placements, valid_weight_curve

DEFAULT_SIZE = (513, 513)  # DeepLab's crop (v3 §4.1): the size its rates were chosen for
ERF_SIZE = (97, 97)  # 16·6 + 1: small enough for seconds on two cores, odd so the centre is a pixel
ERF_SAMPLES = 2


@dataclass
class Analysis:
    """What :func:`analyze` found (see the module docstring)."""

    model: str
    size: tuple[int, int]
    output_stride: int | None
    fields: list[FieldRow]
    placements: list[Placement]
    advice: Advice
    curve: ValidWeightCurve
    flops: int | None
    activation_bytes: int
    conservative: list[str]
    effective: list[EffectiveField] = field(default_factory=list)
    erf_size: tuple[int, int] | None = None

    def as_dict(self) -> dict:
        return {
            "model": self.model,
            "size": list(self.size),
            "output_stride": self.output_stride,
            "flops": self.flops,
            "activation_bytes": self.activation_bytes,
            "receptive_fields": [r.as_dict() for r in self.fields],
            "conservative_ops": list(self.conservative),
            "valid_weights": {
                "curve": self.curve.as_dict(),
                "placements": [p.as_dict() for p in self.placements],
            },
            "advisor": self.advice.as_dict(),
            "effective_receptive_fields": {
                "size": list(self.erf_size) if self.erf_size else None,
                "maps": [e.as_dict() for e in self.effective],
            },
        }


def analyze(
    model: AnalysisModel | nn.Module,
    size: Sequence[int] = DEFAULT_SIZE,
    *,
    output_stride: int | None = None,
    erf: bool = True,
    erf_size: Sequence[int] = ERF_SIZE,
    erf_samples: int = ERF_SAMPLES,
    seed: int = 0,
    name: str | None = None,
    strides: Sequence[int] | None = STRIDES,
    count_flops: bool = True,
) -> Analysis:
    """Receptive fields, valid-weight placements, the adviser and (with ``erf``) the
    effective receptive fields of ``model`` on an H×W input.

    ``model`` is an :class:`~atrous.analysis.source.AnalysisModel` (from
    :func:`~atrous.analysis.source.load_for_analysis`), or a module: built on ``meta``,
    it is walked only (no effective fields); with real weights, it is walked and probed
    as it is. ``output_stride`` switches the model (and its twins) first. The adviser
    compares output ``strides`` (``None``: the analysed one only), with FLOPs counted
    unless ``count_flops`` is off (counting makes each walk about twice as long).
    ``seed`` draws the effective fields' random inputs and the random twin's weights.
    """
    size = _check_size(size, "size")
    if erf:
        _check_size(erf_size, "erf_size")
    if isinstance(model, AnalysisModel):
        arch, label = model.arch, model.name
        probes = probes_of(model, seed) if erf else []
    else:
        on_meta = next(model.parameters()).is_meta
        arch, label = model, type(model).__name__
        probes = [] if on_meta or not erf else [("given", model)]
    if output_stride is not None:
        arch.set_output_stride(output_stride)
    stride = getattr(arch, "output_stride", None)
    traces = stride_traces(arch, size, (stride,) if strides is None else strides, count_flops=count_flops)
    trace = traces.get(stride)
    if not isinstance(trace, Trace):  # not among the strides compared: walk it as it is
        trace = trace_model(arch, size, count_flops=count_flops)
    analysis = Analysis(
        model=name or label,
        size=size,
        output_stride=stride,
        fields=receptive_fields(arch, trace=trace),
        placements=placements(trace),
        advice=advise(arch, size, traces),
        curve=valid_weight_curve(),
        flops=trace.flops,
        activation_bytes=trace.activation_bytes,
        conservative=trace.conservative,
    )
    if probes:
        add_effective_fields(analysis, probes, erf_size, samples=erf_samples, seed=seed)
    return analysis


def add_effective_fields(
    analysis: Analysis,
    probes: Sequence[tuple[str, nn.Module]],
    size: Sequence[int] = ERF_SIZE,
    *,
    samples: int = ERF_SAMPLES,
    seed: int = 0,
) -> Analysis:
    """Probe the effective receptive fields of each (weights label, CPU model) in
    ``probes``, at the analysed output stride, into ``analysis``."""
    erf_hw = _check_size(size, "erf_size")
    for weights, probe in probes:
        if analysis.output_stride is not None and getattr(probe, "output_stride", None) != analysis.output_stride:
            probe.set_output_stride(analysis.output_stride)
        analysis.effective += effective_receptive_fields(probe, erf_hw, samples=samples, weights=weights, seed=seed)
    analysis.erf_size = erf_hw
    return analysis


def probes_of(model: AnalysisModel, seed: int = 0) -> list[tuple[str, nn.Module]]:
    """(weights label, CPU model): the trained weights if any, then a random twin
    initialised from ``seed``."""
    probes = []
    if model.trained is not None:
        probes.append(("trained", model.trained))
    fresh = model.fresh(seed)
    if fresh is not None:
        probes.append(("random", fresh))
    return probes


def _check_size(size: Sequence[int], what: str) -> tuple[int, int]:
    values = tuple(int(s) for s in size)
    if len(values) != 2 or min(values) < 1:
        raise ValueError(f"{what} must be two positive sides (H, W), got {tuple(size)}")
    return values  # type: ignore[return-value]
