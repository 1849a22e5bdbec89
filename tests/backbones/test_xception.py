import math

import pytest
import timm
import torch
from tests.helpers import randomize_norm_stats
from torch import nn

from atrous.backbones.xception import OUTPUT_STRIDES, XceptionAligned65, create_xception65
from atrous.utils.state_dict import StateDictMismatchError

MODULES = ["stem", "blocks.1.stack.act3", "blocks.2.stack.act3", "blocks.18", "blocks.20"]
CHANNELS = [64, 256, 728, 728, 2048]


def _reductions(output_stride: int) -> list[int]:
    return [min(r, output_stride) for r in (2, 4, 8, 16, 32)]


@pytest.fixture(scope="module")
def timm_weights(tmp_path_factory):
    """A timm xception65 (random weights, non-trivial BN statistics) and its saved state dict."""
    ref = randomize_norm_stats(timm.create_model("xception65", pretrained=False, output_stride=32)).eval()
    path = tmp_path_factory.mktemp("xception") / "xception65.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


@pytest.fixture(scope="module")
def ours(timm_weights):
    """Our backbone with timm's weights, built once; tests set the output stride they need."""
    _, path = timm_weights
    return create_xception65(output_stride=16, pretrained=str(path)).eval()


def _conv_geometry(model: nn.Module) -> dict[str, tuple]:
    return {name: (m.stride, m.dilation, m.padding) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)}


@pytest.mark.parametrize("output_stride", OUTPUT_STRIDES)
def test_matches_timm_xception65(output_stride, timm_weights, ours):
    """Same weights, same features as timm's xception65(output_stride=OS), odd input size.

    Our feature module names are timm's, so timm's activations are read with hooks on the
    same names; the stride-4 and stride-8 taps are also timm's own ``forward_intermediates``.
    """
    ref32, path = timm_weights
    if output_stride == 32:
        ref = ref32
    else:
        ref = timm.create_model("xception65", pretrained=False, output_stride=output_stride)
        ref.load_state_dict(torch.load(path, weights_only=True))
        ref.eval()
    ours.set_output_stride(output_stride)
    # Every convolution has timm's stride, dilation and padding for this output stride.
    assert _conv_geometry(ours) == {k: v for k, v in _conv_geometry(ref).items() if not k.startswith("head")}

    captured = {}
    hooks = [
        ref.get_submodule(spec.module).register_forward_hook(
            lambda _m, _i, out, name=spec.module: captured.__setitem__(name, out.clone())
        )
        for spec in ours.feature_info
    ]
    x = torch.randn(1, 3, 65, 97)
    try:
        with torch.no_grad():
            final, intermediates = ref.forward_intermediates(x)
            features = ours(x)
    finally:
        for hook in hooks:
            hook.remove()
    assert len(features) == len(ours.feature_info) == 5
    for feature, spec in zip(features, ours.feature_info, strict=True):
        torch.testing.assert_close(feature, captured[spec.module], atol=1e-4, rtol=0, msg=str(spec))
    # timm's own reduction-4 / reduction-8 features are our taps (timm indices 1 and 2).
    torch.testing.assert_close(features[ours.feature_info.index(reduction=4)], intermediates[1], atol=1e-4, rtol=0)
    torch.testing.assert_close(features[2], intermediates[2], atol=1e-4, rtol=0)
    torch.testing.assert_close(features[-1], final, atol=1e-4, rtol=0)


def test_timm_classifier_is_dropped_and_parameter_count_matches(timm_weights, ours):
    ref, _ = timm_weights
    timm_backbone = sum(p.numel() for n, p in ref.named_parameters() if not n.startswith("head."))
    assert sum(p.numel() for p in ours.parameters()) == timm_backbone
    assert set(ref.state_dict()) - set(ours.state_dict()) == {"head.fc.weight", "head.fc.bias"}


def test_missing_and_unexpected_keys_raise_and_nothing_loads(ours, tmp_path):
    state = dict(ours.state_dict())
    del state["blocks.7.stack.conv2.bn_dw.running_var"]
    state["blocks.21.stack.conv1.conv_dw.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    before = ours.stem[0].conv.weight.clone()
    with pytest.raises(StateDictMismatchError) as info:
        ours.load_pretrained(str(path))
    message = str(info.value)
    assert "broken.pth" in message
    assert "missing keys (blocks.7.stack.conv2.bn_dw.running_var)" in message
    assert "unexpected keys (blocks.21.stack.conv1.conv_dw.weight)" in message
    assert torch.equal(ours.stem[0].conv.weight, before)


@pytest.mark.parametrize("output_stride", OUTPUT_STRIDES)
def test_feature_info_matches_real_outputs(output_stride, ours):
    ours.set_output_stride(output_stride)
    info = ours.feature_info
    assert ours.output_stride == output_stride
    assert [s.module for s in info] == MODULES
    assert info.channels() == CHANNELS
    assert info.reductions() == _reductions(output_stride)
    assert info[info.index(module=ours.aux_module)] == info[3]
    h, w = 64, 96
    with torch.no_grad():
        features = ours(torch.randn(1, 3, h, w))
    assert len(features) == len(info)
    for feature, spec in zip(features, info, strict=True):
        assert feature.shape[1:] == (spec.num_chs, h // spec.reduction, w // spec.reduction), spec


@pytest.mark.parametrize("output_stride", (8, 16))
def test_odd_input_gives_ceil_sized_maps(output_stride, ours):
    """Symmetric padding: each stride-2 step maps n to ceil(n / 2), so 65×97 → 33×49 → 17×25 → 9×13 → 5×7."""
    ours.set_output_stride(output_stride)
    h, w = 65, 97
    with torch.no_grad():
        features = ours(torch.randn(1, 3, h, w))
    for feature, spec in zip(features, ours.feature_info, strict=True):
        assert feature.shape[-2:] == (math.ceil(h / spec.reduction), math.ceil(w / spec.reduction)), spec
    assert features[-1].shape[-2:] == {8: (9, 13), 16: (5, 7)}[output_stride]


def test_set_output_stride_round_trip_keeps_weights(ours):
    ours.set_output_stride(32)
    geometry = _conv_geometry(ours)
    weights = {k: v.clone() for k, v in ours.state_dict().items()}
    ours.set_output_stride(8)
    dilated = _conv_geometry(ours)
    assert dilated != geometry
    # The dropped strides: blocks 2 and 19 run at stride 1, rates 2 in the middle flow, 4 at the end.
    assert dilated["blocks.2.stack.conv3.conv_dw"] == ((1, 1), (1, 1), (1, 1))
    assert dilated["blocks.2.shortcut.conv"][0] == (1, 1)
    assert dilated["blocks.10.stack.conv1.conv_dw"] == ((1, 1), (2, 2), (2, 2))
    assert dilated["blocks.19.stack.conv3.conv_dw"] == ((1, 1), (2, 2), (2, 2))
    assert dilated["blocks.20.stack.conv3.conv_dw"] == ((1, 1), (4, 4), (4, 4))
    ours.set_output_stride(32)
    assert _conv_geometry(ours) == geometry
    for key, value in ours.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_bad_output_stride_and_multi_grid_raise(ours):
    ours.set_output_stride(16)
    with pytest.raises(ValueError, match=r"output_stride must be one of \(8, 16, 32\), got 4"):
        ours.set_output_stride(4)
    with pytest.raises(ValueError, match="multi-grid"):
        ours.set_output_stride(16, multi_grid=(1, 2, 4))
    assert ours.output_stride == 16
    assert ours.feature_info.reductions() == _reductions(16)


def test_fresh_model_initialisation_and_in_chans():
    model = create_xception65(output_stride=8, in_chans=1)
    assert isinstance(model, XceptionAligned65)
    assert model.in_chans == 1
    assert model.stem[0].conv.in_channels == 1
    assert model.output_stride == 8
    assert model.feature_info.reductions() == _reductions(8)
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert all(m.eps == 1e-3 for m in norms)
    assert all(torch.all(m.weight == 1) and torch.all(m.bias == 0) for m in norms)
    conv = model.blocks[20].stack.conv3.conv_pw  # Kaiming normal, fan_out = 2048
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / 2048), rel=0.02)
    with pytest.raises(ValueError, match="got 64"):
        create_xception65(output_stride=64)
