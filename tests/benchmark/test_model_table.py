"""docs/models.md's generated tables: parameter counts against torchvision and timm, the
FLOP counter on a hand-checkable layer, and the document being up to date.

Every model here is built on the meta device: shapes only, nothing allocated or computed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import timm
import torch
import torchvision
from torch import nn
from torchvision.models import segmentation

import atrous
from atrous.benchmark import model_table
from atrous.benchmark.model_table import (
    BACKBONE_SPECS,
    MODEL_REFERENCES,
    build_backbone,
    build_model,
    count_flops,
    count_gflops,
    count_params,
)

DOC = Path(__file__).resolve().parents[2] / "docs" / "models.md"


def _meta(build: Callable[[], nn.Module]) -> nn.Module:
    with torch.device("meta"):
        return build()


def _params_without(model: nn.Module, *prefixes: str) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if not name.startswith(prefixes))


def _tv_segmentation(name: str) -> int:
    fn = getattr(segmentation, name)
    return count_params(_meta(lambda: fn(weights=None, weights_backbone=None, num_classes=21, aux_loss=False)))


# What each "reference" claim in the tables is checked against.
MODEL_REFERENCE_COUNTS: dict[str, Callable[[], int]] = {
    name: (lambda name=name: _tv_segmentation(name))
    for name in ("fcn_resnet50", "fcn_resnet101", "deeplabv3_resnet50", "deeplabv3_resnet101")
}

BACKBONE_REFERENCE_COUNTS: dict[str, Callable[[], int]] = {
    **{
        name: (lambda name=name: _params_without(_meta(getattr(torchvision.models, name)), "fc."))
        for name in ("resnet18", "resnet34", "resnet50", "resnet101")
    },
    "vgg16": lambda: _params_without(_meta(torchvision.models.vgg16), "classifier."),
    # FCN keeps fc6 and fc7 (classifier.0 and classifier.3) as convolutions, drops fc8.
    "vgg16, fully_conv=True": lambda: _params_without(_meta(torchvision.models.vgg16), "classifier.6."),
    "xception65": lambda: _params_without(_meta(lambda: timm.create_model("xception65", pretrained=False)), "head.fc."),
    "mobilenetv2": lambda: _params_without(_meta(torchvision.models.mobilenet_v2), "classifier."),
}


def test_every_reference_claim_is_checked():
    assert set(MODEL_REFERENCE_COUNTS) == set(MODEL_REFERENCES)
    assert set(BACKBONE_REFERENCE_COUNTS) == {spec.label for spec in BACKBONE_SPECS}


@pytest.mark.parametrize("name", sorted(MODEL_REFERENCES))
def test_model_parameter_count_equals_the_reference(name):
    ours = build_model(name)
    assert model_table.table_num_classes(name) == 21
    assert count_params(ours) == MODEL_REFERENCE_COUNTS[name]()


@pytest.mark.parametrize("spec", BACKBONE_SPECS, ids=lambda s: s.label)
def test_backbone_parameter_count_equals_the_reference(spec):
    assert count_params(build_backbone(spec)) == BACKBONE_REFERENCE_COUNTS[spec.label]()


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("fcn8s_vgg16", "vgg16, fully_conv=True"),
        ("deeplabv1_vgg16", "vgg16"),
        ("deeplabv3plus_xception65", "xception65"),
        ("deeplabv3plus_mobilenetv2", "mobilenetv2"),
        ("deeplabv3_resnet101", "resnet101"),
    ],
)
def test_models_use_the_backbone_of_their_table_row(name, label):
    """The backbone inside the model is the one the backbone table counts (and checks)."""
    model = build_model(name)
    _, model_label = model_table.describe_backbone(name, model)
    assert model_label == label
    spec = next(s for s in BACKBONE_SPECS if s.label == label)
    assert count_params(model.backbone) == count_params(build_backbone(spec)) == BACKBONE_REFERENCE_COUNTS[label]()


@pytest.mark.parametrize("device", ["cpu", "meta"])
def test_flop_counter_on_a_single_convolution(device):
    """3→8 channels, 3×3 kernel, 'same' padding on 16×16: 16·16 outputs × 8 channels ×
    27 multiply-accumulates, 2 FLOPs each."""
    with torch.device(device):
        conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)
    expected = 2 * 16 * 16 * 8 * 27
    assert count_flops(conv, 16) == expected == 110_592
    assert count_gflops(conv, 16) == pytest.approx(expected / 1e9)
    assert count_flops(conv, (16, 8)) == expected // 2
    assert count_params(conv) == 8 * 27


def test_flop_counter_restores_training_mode():
    conv = _meta(lambda: nn.Conv2d(3, 8, 1))
    conv.train()
    count_flops(conv, 4)
    assert conv.training


def test_flops_on_meta_equal_flops_on_cpu_for_a_small_model():
    model = atrous.create_model("deeplabv3plus_resnet18", num_classes=3)
    on_meta = _meta(lambda: atrous.create_model("deeplabv3plus_resnet18", num_classes=3))
    assert count_flops(model, 64) == count_flops(on_meta, 64) > 0


def test_unknown_model_needs_a_paper():
    with pytest.raises(KeyError, match="PAPERS"):
        model_table.paper_for("segformer_b0")


def test_replace_sections_keeps_the_prose_and_needs_one_marker_pair():
    text = "intro\n<!-- t:start -->\nold\n<!-- t:end -->\noutro\n"
    assert model_table.replace_sections(text, {"t": "new"}) == "intro\n<!-- t:start -->\nnew\n<!-- t:end -->\noutro\n"
    with pytest.raises(ValueError, match="exactly one"):
        model_table.replace_sections("no markers", {"t": "new"})


@pytest.fixture(scope="module")
def doc_text() -> str:
    return DOC.read_text()


def test_models_doc_is_up_to_date(doc_text):
    """Fails when a model, a parameter count or a FLOP count changed without the doc:
    run ``python scripts/update_models_doc.py``."""
    assert model_table.render_doc(doc_text) == doc_text, "docs/models.md is stale: run scripts/update_models_doc.py"


@pytest.mark.parametrize("name", atrous.list_models(task="semantic"))
def test_every_registered_model_is_in_the_doc(name, doc_text):
    start, end = doc_text.index("<!-- models-table:start -->"), doc_text.index("<!-- models-table:end -->")
    assert f"| `{name}` |" in doc_text[start:end]


def test_numbers_in_the_prose_are_the_codes(doc_text):
    from atrous.models.unet import input_size_for

    side = input_size_for(model_table.TABLE_SIZE)
    assert f"The unpadded `unet` runs the {side}×{side}" in " ".join(doc_text.split())
    fcn32s = build_model("fcn32s_vgg16")
    frozen = sum(p.numel() for p in fcn32s.parameters() if not p.requires_grad)
    assert frozen == 21 * (2 * 32) ** 2
    assert f"{frozen:,} parameters for FCN-32s" in " ".join(doc_text.split())


def test_a_model_that_fails_on_meta_is_counted_on_the_cpu_and_marked(monkeypatch):
    real = model_table.count_flops

    def no_meta(model, size, *, in_chans=3):
        if next(model.parameters()).is_meta:
            raise NotImplementedError("no meta kernel")
        return real(model, size, in_chans=in_chans)

    monkeypatch.setattr(model_table, "count_flops", no_meta)
    row = model_table.measure_model("deeplabv3_resnet18", size=64)
    monkeypatch.undo()
    assert row.counted_on == "cpu"
    assert row.gflops == model_table.measure_model("deeplabv3_resnet18", size=64).gflops
    table = model_table.render_markdown([row], size=64)
    assert "¹ |" in table and "counted on the CPU" in table
