"""Every registered semantic model walks: receptive fields, valid-weight placements and the
adviser, on meta, at a small size (each at its own output stride, FLOPs not counted:
the per-stride comparison and the counting are tested in test_advisor.py)."""

import math

import pytest

from atrous.analysis import analyze, load_for_analysis
from atrous.models import list_models

SIZE = (65, 65)


@pytest.mark.parametrize("name", list_models(task="semantic"))
def test_every_semantic_model(name):
    model = load_for_analysis(name)
    analysis = analyze(model, SIZE, erf=False, strides=None, count_flops=False)
    assert not analysis.conservative, f"{name}: ops the walk does not model: {analysis.conservative}"
    stages = [r for r in analysis.fields if r.part == "stage"]
    info = model.arch.backbone.feature_info
    assert [r.h.jump for r in stages] == [float(spec.reduction) for spec in info], name
    sizes = [r.h.size for r in stages]
    assert sizes == sorted(sizes) and sizes[0] > 1, name
    logits = analysis.fields[-1]
    assert logits.part == "output" and logits.shape == SIZE and logits.h.size >= sizes[-1]
    for p in analysis.placements:
        assert max(p.rate) > 1 and 0 <= p.full_share <= 1 and 0 <= p.single_share <= 1
    (at,) = analysis.advice.strides
    assert at.output_stride == model.arch.output_stride and at.activation_bytes > 0
    if analysis.advice.aspp is not None and at.branches:
        assert at.feature == tuple(math.ceil(s / at.output_stride) for s in SIZE)
        # At the smallest sizes the adviser gives, every branch is as promised.
        for side, allowed in ((at.min_side_non_degenerate, {"ok", "weakened"}), (at.min_side_unweakened, {"ok"})):
            feature = (side // at.output_stride,) * 2
            assert {analyze_status(b.rate, feature) for b in at.branches} <= allowed


def analyze_status(rate, feature):
    from atrous.analysis import status_of

    return status_of(rate, feature)


@pytest.mark.parametrize("name", list_models(task="instance"))
def test_instance_models_are_refused(name):
    with pytest.raises(ValueError, match="instance model"):
        load_for_analysis(name)
