"""The ASPP adviser: DeepLab v3 §3.3's degeneration, for an input size and output stride."""

import pytest

from atrous.analysis import analyze, load_for_analysis, place, status_of


@pytest.mark.parametrize("rate", [1, 2, 6, 12, 18, 24, 36])
@pytest.mark.parametrize("feature", [(5, 5), (17, 17), (33, 33), (33, 65), (65, 65), (37, 37), (73, 73)])
def test_the_written_definitions_agree_with_the_tap_counts(rate, feature):
    """degenerate ⇔ only the centre tap anywhere; weakened ⇔ all nine taps nowhere."""
    p = place("branch", (3, 3), (rate, rate), feature)
    by_counts = "degenerate" if p.single_share == 1.0 else "weakened" if p.full_share == 0.0 else "ok"
    assert status_of(rate, feature) == by_counts


@pytest.fixture(scope="module")
def deeplabv3_513():
    return analyze(load_for_analysis("deeplabv3_resnet50"), (513, 513), erf=False).advice


def test_deeplabv3_at_513(deeplabv3_513):
    """513 → 65×65 features at OS 8, 33×33 at 16, 17×17 at 32. The largest rate is
    weakened at every stride (2·36 + 1 = 73 > 65, 2·18 + 1 = 37 > 33, 2·9 + 1 = 19 > 17),
    degenerate at none; the smallest safe sides are (r + 1)·OS and (2r + 1)·OS."""
    advice = deeplabv3_513
    assert advice.aspp.startswith("DeepLab v3") and advice.output_stride == 16
    expected = {8: ((65, 65), (12, 24, 36)), 16: ((33, 33), (6, 12, 18)), 32: ((17, 17), (3, 6, 9))}
    for stride, (feature, rates) in expected.items():
        s = advice.at(stride)
        assert s.available and s.feature == feature
        assert [b.rate for b in s.branches] == list(rates)
        assert [b.status for b in s.branches] == ["ok", "ok", "weakened"]
        assert (s.min_side_non_degenerate, s.min_side_unweakened) == (
            (rates[-1] + 1) * stride,
            (2 * rates[-1] + 1) * stride,
        )
        assert s.flops > 0 and s.activation_bytes > 0
    assert advice.at(8).flops > advice.at(16).flops > advice.at(32).flops
    assert advice.at(8).activation_bytes > advice.at(16).activation_bytes > advice.at(32).activation_bytes
    assert "image-level" in advice.notes[0]


def test_a_small_input_degenerates_the_large_rates():
    """129 at OS 16: 9×9 features; rate 12 and 18 ≥ 9 see only the centre: 1×1 branches."""
    advice = analyze(load_for_analysis("deeplabv3_resnet18"), (129, 129), erf=False, strides=None).advice
    (s,) = advice.strides
    assert [(b.rate, b.status) for b in s.branches] == [(6, "weakened"), (12, "degenerate"), (18, "degenerate")]
    assert s.worst == "degenerate" and s.branches[-1].single_share == 1.0


def test_deeplabv2_summed_aspp_and_models_without_aspp():
    v2 = analyze(load_for_analysis("deeplabv2_vgg16"), (321, 321), erf=False, strides=None).advice
    assert v2.aspp.startswith("DeepLab v2") and [b.rate for b in v2.at(8).branches] == [6, 12, 18, 24]
    assert v2.at(8).feature == (41, 41) and v2.at(8).branches[-1].status == "weakened"  # 49 > 41
    fcn = analyze(load_for_analysis("fcn8s_vgg16"), (65, 65), erf=False, count_flops=False).advice
    assert fcn.aspp is None and "no ASPP" in fcn.notes[0]
    assert fcn.at(32).available and fcn.at(32).activation_bytes > 0 and not fcn.at(32).branches
    assert not fcn.at(8).available and "cannot change its output stride" in fcn.at(8).reason
