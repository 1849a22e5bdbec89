"""What atrous convolution does to a model, made visible (``atrous analyze``).

* :func:`receptive_fields` — the theoretical receptive field (size, jump, centre) of every
  backbone stage and head branch, from one walk of the forward pass (:mod:`.tracer`,
  :mod:`.fields`; Araujo et al., Distill 2019);
* :func:`effective_receptive_fields` — where the centre pixel's gradient lands (Luo et
  al., NeurIPS 2016);
* :func:`valid_weight_curve` and :func:`placements` — how many of an atrous filter's taps
  read real features (DeepLab v3 §3.3, Fig. 4), for the paper's 65×65 map and for each
  dilated convolution of the model;
* :func:`advise` — which ASPP branches degenerate at an input size and output stride,
  with FLOPs, activation memory and the smallest safe input;
* :func:`analyze` — all of it for one model, :func:`format_report` as text, and
  :mod:`.plots` for the figures.

Everything but the effective fields runs on PyTorch's ``meta`` device: no weights, no
arithmetic, any input size in a fraction of a second.
"""

from .advisor import Advice, BranchAdvice, StrideAdvice, advise, status_of, stride_traces
from .effective_rf import EffectiveField, effective_receptive_fields, mass_radius
from .fields import Field
from .receptive_field import FieldRow, receptive_fields
from .report import Analysis, analyze
from .source import AnalysisModel, load_for_analysis
from .text import format_report
from .tracer import FieldWalk, Trace, trace_model
from .valid_weights import Placement, ValidWeightCurve, place, placements, valid_taps, valid_weight_curve

__all__ = [
    "Advice",
    "Analysis",
    "AnalysisModel",
    "BranchAdvice",
    "EffectiveField",
    "Field",
    "FieldRow",
    "FieldWalk",
    "Placement",
    "StrideAdvice",
    "Trace",
    "ValidWeightCurve",
    "advise",
    "analyze",
    "effective_receptive_fields",
    "format_report",
    "load_for_analysis",
    "mass_radius",
    "place",
    "placements",
    "receptive_fields",
    "status_of",
    "stride_traces",
    "trace_model",
    "valid_taps",
    "valid_weight_curve",
]
