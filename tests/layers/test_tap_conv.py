"""Atrous convolution as shifted 1×1 products equals the direct convolution."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from atrous.layers import TapConv2d, conv2d_taps, use_tap_convs
from atrous.layers import tap_conv as tap_conv_module
from atrous.models import create_model


@pytest.mark.parametrize("dilation", [2, 3, 7, 12, 19, 24, 40])
@pytest.mark.parametrize("kernel", [3, 5])
def test_conv2d_taps_equals_dilated_conv(dilation, kernel):
    torch.manual_seed(dilation)
    x = torch.randn(2, 6, 21, 26, dtype=torch.float64)
    w = torch.randn(5, 6, kernel, kernel, dtype=torch.float64)
    b = torch.randn(5, dtype=torch.float64)
    expected = F.conv2d(x, w, b, padding=dilation * (kernel // 2), dilation=dilation)
    torch.testing.assert_close(conv2d_taps(x, w, b, dilation).double(), expected, rtol=1e-6, atol=1e-6)


def test_taps_beyond_the_feature_map_degenerate_to_1x1():
    """DeepLab v3 §3.3: at a rate as large as the feature map, only the centre weight acts."""
    torch.manual_seed(0)
    x, w = torch.randn(1, 4, 10, 12), torch.randn(3, 4, 3, 3)
    centre_only = F.conv2d(x, w[:, :, 1:2, 1:2])
    torch.testing.assert_close(conv2d_taps(x, w, None, 12), centre_only)
    assert tap_conv_module._live_taps(3, 12, 10, 12) == [(4, 0, 0)]
    assert len(tap_conv_module._live_taps(3, 9, 10, 12)) == 9


def test_conv2d_taps_gradients_and_channels_last():
    torch.manual_seed(1)
    x = torch.randn(2, 8, 16, 16).contiguous(memory_format=torch.channels_last).requires_grad_()
    w = torch.randn(4, 8, 3, 3, requires_grad=True)
    b = torch.randn(4, requires_grad=True)
    out = conv2d_taps(x, w, b, 6)
    assert out.is_contiguous(memory_format=torch.channels_last)
    grads = torch.autograd.grad(out.square().sum(), (x, w, b))
    x2, w2, b2 = (t.detach().clone().requires_grad_() for t in (x, w, b))
    ref = F.conv2d(x2, w2, b2, padding=6, dilation=6)
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    for got, want in zip(grads, torch.autograd.grad(ref.square().sum(), (x2, w2, b2)), strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_conv2d_taps_rounds_once_in_bf16():
    torch.manual_seed(2)
    x, w = torch.randn(1, 64, 24, 24), torch.randn(16, 64, 3, 3) * 0.1
    exact = F.conv2d(x.bfloat16().double(), w.bfloat16().double(), padding=12, dilation=12)
    taps = conv2d_taps(x.bfloat16(), w.bfloat16(), None, 12)
    assert taps.dtype == torch.bfloat16
    direct = F.conv2d(x.bfloat16(), w.bfloat16(), padding=12, dilation=12)
    # the tap form is no less accurate than the direct bf16 kernel (both round the output)
    err_taps = (taps.double() - exact).abs().max()
    err_direct = (direct.double() - exact).abs().max()
    assert err_taps <= 2 * err_direct + 1e-3


def test_eligibility():
    assert tap_conv_module.tap_eligible(nn.Conv2d(4, 4, 3, padding=6, dilation=6))
    assert not tap_conv_module.tap_eligible(nn.Conv2d(4, 4, 3, padding=1))  # not dilated
    assert not tap_conv_module.tap_eligible(nn.Conv2d(4, 4, 3, stride=2, padding=2, dilation=2))
    assert not tap_conv_module.tap_eligible(nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=4))
    assert not tap_conv_module.tap_eligible(nn.Conv2d(4, 4, 3, padding=0, dilation=2))  # valid padding
    assert not tap_conv_module.tap_eligible(nn.Conv2d(4, 4, 3, padding=2, dilation=2, padding_mode="reflect"))


def test_use_tap_convs_keeps_parameters_and_outputs(monkeypatch):
    torch.manual_seed(3)
    model = create_model("deeplabv3_resnet18", num_classes=3, output_stride=8).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    params = list(model.parameters())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        ref = model(x)
    dilated = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.dilation[0] > 1 and m.stride == (1, 1)]
    assert len(dilated) > 3  # ASPP's three atrous branches and the dilated 3×3s of layer3/layer4
    assert use_tap_convs(model) == len(dilated)
    assert list(model.parameters()) == params  # the same Parameter objects: optimisers keep working
    assert model.state_dict().keys() == before.keys()
    assert isinstance(model.classifier[0].convs[1][0], TapConv2d)
    # force the tap form everywhere, whatever the timing says
    monkeypatch.setattr(TapConv2d, "_taps_are_faster", lambda self, x: True)
    monkeypatch.setattr(tap_conv_module, "_choices", {})
    with torch.no_grad():
        torch.testing.assert_close(model(x), ref, rtol=1e-4, atol=1e-4)
    assert tap_conv_module._choices and all(tap_conv_module._choices.values())


def test_choice_is_cached_per_shape(monkeypatch):
    calls = []

    def fake_timing(self, x):
        calls.append(tuple(x.shape))
        return False

    monkeypatch.setattr(TapConv2d, "_taps_are_faster", fake_timing)
    monkeypatch.setattr(tap_conv_module, "_choices", {})
    conv = nn.Conv2d(4, 4, 3, padding=4, dilation=4)
    use_tap_convs(conv)
    for size in (8, 8, 12, 8):
        conv(torch.randn(1, 4, size, size))
    assert calls == [(1, 4, 8, 8), (1, 4, 12, 12)]


def test_deterministic_mode_uses_the_direct_kernel(monkeypatch):
    monkeypatch.setattr(TapConv2d, "_taps_are_faster", lambda self, x: pytest.fail("must not time"))
    conv = nn.Conv2d(2, 2, 3, padding=2, dilation=2)
    use_tap_convs(conv)
    previous = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        conv(torch.randn(1, 2, 8, 8))
    finally:
        torch.use_deterministic_algorithms(previous)
