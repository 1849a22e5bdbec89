"""The theoretical receptive field of each backbone stage and each head branch.

:func:`receptive_fields` walks one forward pass (:func:`.tracer.trace_model`, on ``meta``
for a model built there) and reads off the fields of

* every feature map the backbone publishes (its ``feature_info``: ResNet's stem and four
  stages, VGG's five poolings, the U-Net encoder's levels …);
* every branch of a multi-branch head: ASPP's 1×1, atrous and image-pooling branches
  (DeepLab v3 §3.3), DeepLab v2's summed atrous branches (§3.3, Fig. 4), PSPNet's pyramid
  bins (§3.3);
* the head's other parts (a decoder's fusion, a projection, the classifier) and the
  head's output;
* the logits the model returns.

Each row gives, per axis, the field's size, its jump (the stride from the input) and the
centre of output pixel (0, 0)'s field in input pixels (:mod:`.fields`; coordinates of the
padded input, so negative offsets are expected), and whether the field of the map's
centre pixel covers the whole input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from torch import nn

from ..layers import ASPP, ASPPSum, PyramidPooling
from .fields import Field
from .tracer import Spatial, Trace, trace_model

# Modules that do not move a field: not worth a row of their own.
_QUIET = (
    nn.BatchNorm2d,
    nn.GroupNorm,
    nn.ReLU,
    nn.ReLU6,
    nn.Hardtanh,
    nn.Dropout,
    nn.Dropout2d,
    nn.Identity,
)


@dataclass(frozen=True)
class FieldRow:
    """The receptive field of one feature map.

    ``part`` is ``"stage"`` (a backbone feature), ``"branch"`` (a branch of ASPP or the
    pyramid pooling), ``"head"`` (another part of the head, or its output) or
    ``"output"`` (the logits); ``name`` is the module path; ``shape`` the map's height
    and width.
    """

    part: str
    name: str
    label: str
    shape: tuple[int, int]
    h: Field
    w: Field
    covers_input: bool

    def as_dict(self) -> dict:
        return {
            "part": self.part,
            "name": self.name,
            "label": self.label,
            "shape": list(self.shape),
            "h": _axis_dict(self.h),
            "w": _axis_dict(self.w),
            "covers_input": self.covers_input,
        }


def _axis_dict(f: Field) -> dict:
    return {"size": f.size, "jump": f.jump, "start": f.start, "slack": f.slack}


def receptive_fields(
    model: nn.Module, size: Sequence[int] | None = None, *, trace: Trace | None = None
) -> list[FieldRow]:
    """One :class:`FieldRow` per backbone stage, head part and branch, and the logits.

    Give ``size`` (H, W) to walk ``model`` now, or a ``trace`` of it already walked.
    """
    if trace is None:
        if size is None:
            raise ValueError("receptive_fields needs an input size or a trace")
        trace = trace_model(model, size)
    rows = _stage_rows(model, trace)
    classifier = getattr(model, "classifier", None)
    if classifier is not None:
        rows += _head_rows(classifier, "classifier", trace)
    if trace.outputs and trace.outputs[0].fields is not None and not hasattr(model, "feature_info"):
        rows.append(_row(trace, "output", "", "logits", trace.outputs[0].shape, trace.outputs[0].fields))
    return rows


def _row(trace: Trace, part: str, name: str, label: str, shape: Sequence[int], fields: Spatial) -> FieldRow:
    h, w = int(shape[-2]), int(shape[-1])
    ih, iw = trace.input_size
    covers = all(
        f.span(n // 2)[0] <= 0 and f.span(n // 2)[1] >= extent - 1
        for f, n, extent in ((fields.h, h, ih), (fields.w, w, iw))
    )
    return FieldRow(part, name, label, (h, w), fields.h, fields.w, covers)


def _stage_rows(model: nn.Module, trace: Trace) -> list[FieldRow]:
    """The backbone's published features; ``model`` may be a model or a bare backbone."""
    bare = hasattr(model, "feature_info")
    info = getattr(model if bare else getattr(model, "backbone", None), "feature_info", None)
    call = trace.modules.get("" if bare else "backbone")
    if info is None or call is None:
        return []
    rows = []
    for spec, note in zip(info, call.outputs, strict=False):
        if note.fields is None:
            continue
        label = f"{spec.module} (reduction {spec.reduction})"
        name = spec.module if bare else f"backbone.{spec.module}"
        rows.append(_row(trace, "stage", name, label, note.shape, note.fields))
    return rows


def _head_rows(head: nn.Module, prefix: str, trace: Trace) -> list[FieldRow]:
    """Branches of every ASPP / ASPPSum / pyramid pooling in the head, then the head's
    direct parts (a ModuleList's items one by one), then the head's output."""
    rows: list[FieldRow] = []
    named = set()
    for name, module in head.named_modules():
        full = f"{prefix}.{name}" if name else prefix
        for branch_name, label in branches(module):
            path = f"{full}.{branch_name}"
            note = _output(trace, path)
            if note is not None:
                rows.append(_row(trace, "branch", path, label, note.shape, note.fields))
                named.add(path)
    for child_name, child in head.named_children():
        items = (
            [(f"{child_name}.{i}", m) for i, m in enumerate(child)]
            if isinstance(child, nn.ModuleList)
            else [(child_name, child)]
        )
        for name, module in items:
            path = f"{prefix}.{name}"
            note = _output(trace, path)
            if path in named or isinstance(module, _QUIET) or note is None:
                continue
            rows.append(_row(trace, "head", path, describe(module), note.shape, note.fields))
    note = _output(trace, prefix)
    if note is not None:
        rows.append(_row(trace, "head", prefix, f"head output ({type(head).__name__})", note.shape, note.fields))
    return rows


def branches(module: nn.Module) -> list[tuple[str, str]]:
    """(child path, label) of each parallel branch of an ASPP, ASPPSum or pyramid pooling."""
    if isinstance(module, ASPP):
        out = []
        for i in range(len(module.convs)):
            if i == 0:
                label = "ASPP 1×1"
            elif i == len(module.convs) - 1:
                label = "ASPP image pooling"
            else:
                label = f"ASPP 3×3 rate {module.rates[i - 1]}"
            out.append((f"convs.{i}", label))
        return out
    if isinstance(module, ASPPSum):
        return [(f"branches.{i}", f"ASPP (summed) 3×3 rate {r}") for i, r in enumerate(module.rates)]
    if isinstance(module, PyramidPooling):
        return [(f"stages.{i}", f"pyramid bin {b}×{b}") for i, b in enumerate(module.bins)]
    return []


def describe(module: nn.Module) -> str:
    """A short label: the type, and a convolution's kernel and rate."""
    conv = module if isinstance(module, nn.Conv2d | nn.ConvTranspose2d) else getattr(module, "conv", None)
    label = type(module).__name__
    if isinstance(conv, nn.Conv2d | nn.ConvTranspose2d):
        k = conv.kernel_size
        label += f" {k[0]}×{k[1]}"
        if conv.dilation[0] > 1:
            label += f" rate {conv.dilation[0]}"
    return label


def _output(trace: Trace, name: str):
    call = trace.modules.get(name)
    if call is None or not call.outputs or call.outputs[0].fields is None:
        return None
    return call.outputs[0]
