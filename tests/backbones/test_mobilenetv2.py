import pytest
import torch
import torchvision
from tests.helpers import randomize_norm_stats

from atrous.backbones.mobilenetv2 import OUTPUT_STRIDES, InvertedResidual, MobileNetV2, create_mobilenetv2
from atrous.utils.state_dict import StateDictMismatchError, _torchvision_weight_url

FEATURE_INDICES = (1, 3, 6, 13, 18)
CHANNELS = [16, 24, 32, 96, 1280]

# The documented rule, written out by hand: block index → (depthwise stride, dilation) for
# the blocks that differ from output stride 32. A de-strided block keeps the previous rate.
HAND_LAYOUT = {
    32: {},
    16: {14: (1, 1), 15: (1, 2), 16: (1, 2), 17: (1, 2)},
    8: {
        7: (1, 1),
        **{i: (1, 2) for i in range(8, 14)},
        14: (1, 2),
        **{i: (1, 4) for i in (15, 16, 17)},
    },
}


def _conv_layout(model: torch.nn.Module) -> list[tuple]:
    return [(m.stride, m.dilation, m.padding) for m in model.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.fixture(scope="module")
def reference_state(tmp_path_factory):
    """A torchvision MobileNetV2 with non-trivial norm statistics, saved to a file."""
    torch.manual_seed(0)
    ref = randomize_norm_stats(torchvision.models.mobilenet_v2(weights=None)).eval()
    path = tmp_path_factory.mktemp("weights") / "mobilenet_v2.pth"
    torch.save(ref.state_dict(), path)
    return ref, path


def _dilate_by_hand(ref: torch.nn.Module, output_stride: int) -> torch.nn.Module:
    for index, (stride, dilation) in HAND_LAYOUT[output_stride].items():
        dw = ref.features[index].conv[-3][0]
        assert dw.groups == dw.in_channels and dw.kernel_size == (3, 3)
        dw.stride, dw.dilation, dw.padding = (stride, stride), (dilation, dilation), (dilation, dilation)
    return ref


@pytest.mark.parametrize("output_stride", OUTPUT_STRIDES)
def test_matches_torchvision_with_the_documented_dilation(reference_state, output_stride):
    trained, path = reference_state
    ref = _dilate_by_hand(torchvision.models.mobilenet_v2(weights=None), output_stride)
    ref.load_state_dict(trained.state_dict())
    ref.eval()
    ours = create_mobilenetv2(output_stride=output_stride, pretrained=str(path)).eval()
    assert _conv_layout(ours.features) == _conv_layout(ref.features)
    x = torch.randn(1, 3, 67, 83)
    with torch.no_grad():
        features = ours(x)
        expected = [ref.features[: k + 1](x) for k in FEATURE_INDICES]
    assert len(features) == len(expected) == len(ours.feature_info)
    for feature, want, spec in zip(features, expected, ours.feature_info, strict=True):
        assert feature.shape == want.shape, spec
        assert (feature - want).abs().max().item() <= 1e-4, spec


@pytest.mark.parametrize("output_stride", (8, 16))
def test_dilated_features_subsampled_equal_output_stride_32(reference_state, output_stride):
    """The à trous rule is exact: every (32 / os)-th pixel of the dense map is the OS-32 map."""
    _, path = reference_state
    model = create_mobilenetv2(pretrained=str(path)).eval()
    x = torch.randn(1, 3, 61, 75)
    with torch.no_grad():
        coarse, coarse_info = model(x), model.feature_info
        model.set_output_stride(output_stride)
        dense = model(x)
    for c, d, c_spec, spec in zip(coarse, dense, coarse_info, model.feature_info, strict=True):
        step = c_spec.reduction // spec.reduction
        sub = d[..., ::step, ::step]
        assert torch.isfinite(d).all()
        assert sub.shape == c.shape, spec
        assert (sub - c).abs().max().item() <= 1e-4, spec


def test_torchvision_state_dict_loads_with_only_the_classifier_dropped(reference_state):
    ref, path = reference_state
    ours = create_mobilenetv2(pretrained=str(path))
    theirs = ref.state_dict()
    assert set(theirs) - set(ours.state_dict()) == {"classifier.1.weight", "classifier.1.bias"}
    for key, value in ours.state_dict().items():
        assert torch.equal(value, theirs[key]), key
    assert "features.0.0.weight" in theirs and "features.1.conv.0.0.weight" in theirs


def test_parameter_count_is_torchvisions_without_classifier():
    ref = torchvision.models.mobilenet_v2(weights=None)
    expected = sum(p.numel() for p in ref.parameters()) - sum(p.numel() for p in ref.classifier.parameters())
    assert sum(p.numel() for p in MobileNetV2().parameters()) == expected == 2_223_872


@pytest.mark.parametrize("output_stride", OUTPUT_STRIDES)
def test_feature_info_matches_real_outputs(output_stride):
    backbone = create_mobilenetv2(output_stride=output_stride).eval()
    h, w = 64, 96
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, h, w))
    info = backbone.feature_info
    assert len(features) == len(info)
    for feature, spec in zip(features, info, strict=True):
        assert feature.shape[1] == spec.num_chs, spec
        assert feature.shape[-2:] == (h // spec.reduction, w // spec.reduction), spec
    assert info.channels() == CHANNELS
    assert info.reductions() == [min(r, output_stride) for r in (2, 4, 8, 16, 32)]
    assert [s.module for s in info] == [f"features.{i}" for i in FEATURE_INDICES]
    assert info[info.index(module=backbone.aux_module)].reduction == min(16, output_stride)
    assert backbone.output_stride == output_stride
    for spec in info:
        backbone.get_submodule(spec.module)


def test_feature_info_at_output_stride_16():
    info = create_mobilenetv2(output_stride=16).feature_info
    assert [(s.num_chs, s.reduction, s.module) for s in info] == [
        (16, 2, "features.1"),
        (24, 4, "features.3"),
        (32, 8, "features.6"),
        (96, 16, "features.13"),
        (1280, 16, "features.18"),
    ]


@pytest.mark.parametrize("output_stride", OUTPUT_STRIDES)
def test_only_depthwise_convs_are_strided_or_dilated_as_documented(output_stride):
    backbone = create_mobilenetv2(output_stride=output_stride)
    reference = torchvision.models.mobilenet_v2(weights=None)
    for index, block in enumerate(backbone.features):
        if not isinstance(block, InvertedResidual):
            continue
        nominal = reference.features[index].conv[-3][0].stride[0]
        stride, dilation = HAND_LAYOUT[output_stride].get(index, (nominal, 1))
        dw = block.depthwise
        assert (dw.stride, dw.dilation, dw.padding) == ((stride,) * 2, (dilation,) * 2, (dilation,) * 2), index
        for conv in block.modules():
            if isinstance(conv, torch.nn.Conv2d) and conv is not dw:
                assert conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.dilation == (1, 1)
        assert block.use_res_connect == reference.features[index].use_res_connect, index


def test_set_output_stride_round_trip_restores_layout_and_keeps_weights():
    backbone = create_mobilenetv2(output_stride=32)
    layout = _conv_layout(backbone)
    weights = {k: v.clone() for k, v in backbone.state_dict().items()}
    backbone.set_output_stride(8)
    assert _conv_layout(backbone) != layout
    assert backbone.feature_info.reductions() == [2, 4, 8, 8, 8]
    backbone.set_output_stride(16)
    backbone.set_output_stride(32)
    assert _conv_layout(backbone) == layout
    assert backbone.feature_info.reductions() == [2, 4, 8, 16, 32]
    assert all(torch.equal(v, weights[k]) for k, v in backbone.state_dict().items())


def test_layout_at_32_is_torchvisions():
    ours = _conv_layout(create_mobilenetv2().features)
    assert ours == _conv_layout(torchvision.models.mobilenet_v2(weights=None).features)


@pytest.mark.parametrize("bad", [4, 12, 64, "16"])
def test_output_stride_must_be_8_16_or_32(bad):
    with pytest.raises(ValueError, match=r"output_stride must be one of \(8, 16, 32\)"):
        create_mobilenetv2(output_stride=bad)


def test_multi_grid_is_rejected():
    with pytest.raises(ValueError, match="multi_grid"):
        create_mobilenetv2(output_stride=16, multi_grid=(1, 2, 4))
    backbone = create_mobilenetv2()
    with pytest.raises(ValueError, match="multi_grid"):
        backbone.set_output_stride(16, (1, 2, 4))
    assert backbone.output_stride == 32


def test_missing_key_raises_and_nothing_loads(tmp_path):
    state = torchvision.models.mobilenet_v2(weights=None).state_dict()
    del state["features.17.conv.2.weight"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    backbone = create_mobilenetv2()
    before = backbone.features[0][0].weight.clone()
    with pytest.raises(StateDictMismatchError, match=r"missing keys \(features\.17\.conv\.2\.weight\)"):
        backbone.load_pretrained(str(path))
    assert torch.equal(backbone.features[0][0].weight, before)


def test_in_chans():
    backbone = create_mobilenetv2(in_chans=4, output_stride=16)
    assert backbone.in_chans == 4
    assert backbone.features[0][0].in_channels == 4
    with torch.no_grad():
        out = backbone.eval()(torch.randn(1, 4, 32, 32))
    assert out[-1].shape == (1, 1280, 2, 2)


def test_torchvision_weight_names_resolve():
    assert MobileNetV2.torchvision_weights == "MobileNet_V2_Weights"
    assert _torchvision_weight_url("IMAGENET1K_V1", MobileNetV2.torchvision_weights) is not None
    assert _torchvision_weight_url("MobileNet_V2_Weights.IMAGENET1K_V2", None) is not None
