"""The model table of ``docs/models.md``: papers, backbones, parameters and GFLOPs.

Every number in the table is computed, never typed: :func:`model_rows` builds each
registered model on PyTorch's ``meta`` device (shapes only, no memory, no arithmetic),
counts its parameters, and runs one 1×3×512×512 input through it in evaluation mode
inside :class:`torch.utils.flop_counter.FlopCounterMode`. A model whose forward pass
cannot run on ``meta`` is counted on the CPU instead, and the table says so.

``scripts/update_models_doc.py`` rewrites the generated sections of ``docs/models.md``
(between ``<!-- models-table:start -->`` and ``<!-- models-table:end -->``, and the same
for ``backbones-table``); ``--check`` fails when the document is stale. The tests run the
same check, and compare the parameter counts claimed in the "reference" columns with
torchvision and timm.

FLOPs are as ``FlopCounterMode`` counts them: convolutions (transposed ones included) and
matrix products, 2 FLOPs per multiply-accumulate. Normalisation, activations, pooling,
additions and interpolation are not counted.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from ..backbones import BACKBONES, create_backbone
from ..models import create_model, list_models
from .flops import count_flops as count_run_flops

TABLE_SIZE = 512  # input side for the GFLOPs column

# Classes each model is built with for the table: PASCAL VOC's 21, except the U-Nets,
# which the paper trains for 2 (cell / background, §2 and §4).
DEFAULT_NUM_CLASSES = 21
NUM_CLASSES = {"unet*": 2}

# Paper (and section) by model-name pattern; the first match wins, so specific patterns
# come before general ones. A registered model matching none is an error: a new model
# must be given its paper here before the table can be regenerated.
PAPERS: tuple[tuple[str, str], ...] = (
    ("fcn_resnet*", "Long et al. 2015 (torchvision variant)"),
    ("fcn*s_vgg16", "Long et al. 2015 §4.2"),
    ("deeplabv1_*", "Chen et al. 2015 §3.1, Table 2 (LargeFOV)"),
    ("deeplabv2_*", "Chen et al. 2017 (TPAMI) §3.3"),
    ("deeplabv3_paper_*", "Chen et al. 2017 §3.2–3.3, §4.1"),
    ("deeplabv3_mobilenetv2", "Chen et al. 2017 §3.3; Sandler et al. 2018 §6.3"),
    ("deeplabv3_*", "Chen et al. 2017 §3.3 (torchvision layout)"),
    ("deeplabv3plus_mobilenetv2", "Chen et al. 2018 §3; Sandler et al. 2018"),
    ("deeplabv3plus_*", "Chen et al. 2018 §3"),
    ("pspnet_*", "Zhao et al. 2017 §3.3"),
    ("unet*", "Ronneberger et al. 2015 §2"),
)

# Whole models whose parameter count equals an external implementation's (checked by
# tests/benchmark/test_model_table.py, built as the table builds them).
MODEL_REFERENCES: dict[str, str] = {
    "fcn_resnet50": "torchvision `fcn_resnet50` (aux_loss=False)",
    "fcn_resnet101": "torchvision `fcn_resnet101` (aux_loss=False)",
    "deeplabv3_resnet50": "torchvision `deeplabv3_resnet50` (aux_loss=False)",
    "deeplabv3_resnet101": "torchvision `deeplabv3_resnet101` (aux_loss=False)",
}

BACKBONE_NAMES = {
    "resnet18": "ResNet-18",
    "resnet34": "ResNet-34",
    "resnet50": "ResNet-50",
    "resnet101": "ResNet-101",
    "vgg16": "VGG-16",
    "xception65": "aligned Xception-65",
    "mobilenetv2": "MobileNetV2",
}


@dataclass(frozen=True)
class BackboneSpec:
    """One row of the backbone table: a backbone as the models build it."""

    label: str
    name: str
    reference: str
    kwargs: Mapping[str, Any] = field(default_factory=dict)


BACKBONE_SPECS: tuple[BackboneSpec, ...] = (
    BackboneSpec("resnet18", "resnet18", "torchvision `resnet18` without `fc`"),
    BackboneSpec("resnet34", "resnet34", "torchvision `resnet34` without `fc`"),
    BackboneSpec("resnet50", "resnet50", "torchvision `resnet50` without `fc`"),
    BackboneSpec("resnet101", "resnet101", "torchvision `resnet101` without `fc`"),
    BackboneSpec("vgg16", "vgg16", "torchvision `vgg16` without `classifier`"),
    BackboneSpec(
        "vgg16, fully_conv=True",
        "vgg16",
        "torchvision `vgg16` without `classifier.6` (fc8)",
        {"fully_conv": True},
    ),
    BackboneSpec("xception65", "xception65", "timm `xception65` without `head.fc`"),
    BackboneSpec("mobilenetv2", "mobilenetv2", "torchvision `mobilenet_v2` without `classifier`"),
)


@dataclass(frozen=True)
class ModelRow:
    """One registered model, as the table describes it."""

    name: str
    paper: str
    backbone: str  # display name
    backbone_label: str  # the BackboneSpec label it uses, "" for none (U-Net)
    output_stride: int
    num_classes: int
    params: int
    gflops: float
    reference: str
    counted_on: str  # "meta", or "cpu" where the forward pass cannot run on meta


@dataclass(frozen=True)
class BackboneRow:
    label: str
    params: int
    reference: str
    used_by: tuple[str, ...]


# --- counting -----------------------------------------------------------------------


def count_params(model: nn.Module) -> int:
    """Every parameter, trainable or frozen (FCN's fixed final upsampling included)."""
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, size: int | Sequence[int] = TABLE_SIZE, *, in_chans: int = 3) -> int:
    """FLOPs of one forward pass on a 1×in_chans×H×W input, in evaluation mode.

    The input is created on the device of the model's first parameter, so a model built
    on ``meta`` is counted without computing anything. FLOPs are
    :func:`atrous.benchmark.flops.count_flops`'s (``FlopCounterMode``'s for a forward
    pass): 2 per multiply-accumulate of convolutions and matrix products.
    """
    h, w = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    first = next(model.parameters(), None)
    device = first.device if first is not None else torch.device("cpu")
    x = torch.zeros(1, in_chans, h, w, device=device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return count_run_flops(lambda: model(x))
    finally:
        model.train(was_training)


def count_gflops(model: nn.Module, size: int | Sequence[int] = TABLE_SIZE, *, in_chans: int = 3) -> float:
    """:func:`count_flops` in units of 10⁹."""
    return count_flops(model, size, in_chans=in_chans) / 1e9


# --- metadata -----------------------------------------------------------------------


def table_num_classes(name: str) -> int:
    for pattern, num_classes in NUM_CLASSES.items():
        if fnmatch.fnmatchcase(name, pattern):
            return num_classes
    return DEFAULT_NUM_CLASSES


def paper_for(name: str) -> str:
    for pattern, paper in PAPERS:
        if fnmatch.fnmatchcase(name, pattern):
            return paper
    raise KeyError(f"{name}: no paper in atrous.benchmark.model_table.PAPERS; add the model's paper and section there")


def build_model(name: str, *, device: str | torch.device = "meta") -> nn.Module:
    """The registered model as the table counts it (``table_num_classes``, defaults otherwise)."""
    with torch.device(device):
        return create_model(name, num_classes=table_num_classes(name))


def _backbone_key(name: str) -> str | None:
    """The backbone named by the registry name's last part (``deeplabv3_paper_resnet50`` → resnet50)."""
    key = name.rsplit("_", 1)[-1]
    return key if key in BACKBONES else None


def describe_backbone(name: str, model: nn.Module) -> tuple[str, str]:
    """(display name, backbone-table label) of a built model's backbone."""
    key = _backbone_key(name)
    backbone = model.backbone
    if key is None:
        config = getattr(model, "config", {})
        if "base_chs" in config and "depth" in config:
            base, depth = int(config["base_chs"]), int(config["depth"])
            return f"U-Net encoder ({base}–{base * 2**depth} ch, depth {depth})", ""
        return type(backbone).__name__, ""
    display = BACKBONE_NAMES.get(key, key)
    fully_conv = bool(getattr(backbone, "fully_conv", False))
    if fully_conv:
        display += " + fc6/fc7"
    for spec in BACKBONE_SPECS:
        if spec.name == key and bool(spec.kwargs.get("fully_conv", False)) == fully_conv:
            return display, spec.label
    return display, ""


# --- rows ---------------------------------------------------------------------------


def measure_model(name: str, size: int = TABLE_SIZE) -> ModelRow:
    """Build ``name`` on ``meta`` (falling back to the CPU if its forward fails there) and count it."""
    counted_on = "meta"
    try:
        model = build_model(name, device="meta")
        flops = count_flops(model, size, in_chans=model.backbone.in_chans)
    except RuntimeError:  # NotImplementedError included: an op without a meta kernel
        counted_on = "cpu"
        model = build_model(name, device="cpu")
        flops = count_flops(model, size, in_chans=model.backbone.in_chans)
    backbone, label = describe_backbone(name, model)
    return ModelRow(
        name=name,
        paper=paper_for(name),
        backbone=backbone,
        backbone_label=label,
        output_stride=int(model.output_stride),
        num_classes=int(model.num_classes),
        params=count_params(model),
        gflops=flops / 1e9,
        reference=MODEL_REFERENCES.get(name, ""),
        counted_on=counted_on,
    )


def model_rows(names: Iterable[str] | None = None, size: int = TABLE_SIZE) -> list[ModelRow]:
    """One :class:`ModelRow` per registered model (or per name given), in registry order."""
    return [measure_model(name, size) for name in (list_models(task="semantic") if names is None else names)]


def build_backbone(spec: BackboneSpec, *, device: str | torch.device = "meta") -> nn.Module:
    with torch.device(device):
        return create_backbone(spec.name, **spec.kwargs)


def backbone_rows(rows: Sequence[ModelRow]) -> list[BackboneRow]:
    """One :class:`BackboneRow` per :data:`BACKBONE_SPECS` entry, with the models using it."""
    return [
        BackboneRow(
            label=spec.label,
            params=count_params(build_backbone(spec)),
            reference=spec.reference,
            used_by=tuple(r.name for r in rows if r.backbone_label == spec.label),
        )
        for spec in BACKBONE_SPECS
    ]


# --- markdown -----------------------------------------------------------------------


def render_markdown(rows: Sequence[ModelRow], size: int = TABLE_SIZE) -> str:
    """The models table (GitHub markdown)."""
    lines = [
        f"| model | paper | backbone | output stride | classes | parameters | GFLOPs ({size}×{size}) | reference |",
        "|---|---|---|---:|---:|---:|---:|---|",
    ]
    for r in rows:
        gflops = f"{r.gflops:.2f}" + ("¹" if r.counted_on != "meta" else "")
        lines.append(
            f"| `{r.name}` | {r.paper} | {r.backbone} | {r.output_stride} | {r.num_classes} | {r.params:,} "
            f"| {gflops} | {r.reference} |"
        )
    if any(r.counted_on != "meta" for r in rows):
        lines += ["", "¹ counted on the CPU: this model's forward pass does not run on the meta device."]
    return "\n".join(lines)


def render_backbones_markdown(rows: Sequence[BackboneRow]) -> str:
    """The backbone table (GitHub markdown)."""
    lines = ["| backbone | parameters | reference (same count) | used by |", "|---|---:|---|---|"]
    for r in rows:
        used_by = ", ".join(f"`{n}`" for n in r.used_by)
        lines.append(f"| `{r.label}` | {r.params:,} | {r.reference} | {used_by} |")
    return "\n".join(lines)


def generate_sections(size: int = TABLE_SIZE) -> dict[str, str]:
    """Generated section name → markdown body, for :func:`replace_sections`."""
    rows = model_rows(size=size)
    return {
        "models-table": render_markdown(rows, size),
        "backbones-table": render_backbones_markdown(backbone_rows(rows)),
    }


def _markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:start -->", f"<!-- {name}:end -->"


def replace_sections(text: str, sections: Mapping[str, str]) -> str:
    """``text`` with the body between each section's start and end markers replaced."""
    for name, body in sections.items():
        start, end = _markers(name)
        pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.DOTALL)
        found = len(pattern.findall(text))
        if found != 1:
            raise ValueError(f"expected exactly one {start} … {end} pair, found {found}")
        text = pattern.sub(lambda _m, start=start, end=end, body=body: f"{start}\n{body}\n{end}", text)
    return text


def render_doc(text: str, size: int = TABLE_SIZE) -> str:
    """The document ``text`` with every generated section brought up to date."""
    return replace_sections(text, generate_sections(size))
