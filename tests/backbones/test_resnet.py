import pytest
import torch
import torchvision
from tests.helpers import randomize_norm_stats

from atrous.backbones import BACKBONES, OUTPUT_STRIDES, create_backbone
from atrous.utils.state_dict import StateDictMismatchError

RESNETS = [name for name in BACKBONES if name.startswith("resnet")]

TV_DILATION = {8: [False, True, True], 16: [False, False, True], 32: [False, False, False]}


@pytest.mark.parametrize("output_stride", OUTPUT_STRIDES)
@pytest.mark.parametrize("name", RESNETS)
def test_feature_info_matches_real_outputs(name, output_stride):
    backbone = create_backbone(name, output_stride=output_stride).eval()
    h, w = 64, 96
    with torch.no_grad():
        features = backbone(torch.randn(1, 3, h, w))
    info = backbone.feature_info
    assert len(features) == len(info)
    for feature, spec in zip(features, info, strict=True):
        assert feature.shape[1] == spec.num_chs, spec
        assert feature.shape[-2:] == (h // spec.reduction, w // spec.reduction), spec
    assert info[-1].reduction == output_stride
    assert [s.module for s in info] == ["relu", "layer1", "layer2", "layer3", "layer4"]


@pytest.mark.parametrize("output_stride", OUTPUT_STRIDES)
def test_resnet50_matches_torchvision_dilated_resnet(output_stride, tmp_path):
    """Same weights, same stride/dilation layout as torchvision's replace_stride_with_dilation."""
    ref = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=TV_DILATION[output_stride])
    ref = randomize_norm_stats(ref).eval()
    path = tmp_path / "resnet50.pth"
    torch.save(ref.state_dict(), path)
    ours = create_backbone("resnet50", output_stride=output_stride, pretrained=str(path)).eval()
    x = torch.randn(2, 3, 97, 129)
    with torch.no_grad():
        stem = ref.relu(ref.bn1(ref.conv1(x)))
        c2 = ref.layer1(ref.maxpool(stem))
        c5 = ref.layer4(ref.layer3(ref.layer2(c2)))
        features = ours(x)
    torch.testing.assert_close(features[1], c2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(features[-1], c5, atol=1e-4, rtol=1e-5)


def test_torchvision_basic_block_imagenet_weights_load(tmp_path):
    ref = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(ref.state_dict(), path)
    ours = create_backbone("resnet18", pretrained=str(path))
    for key, value in ours.state_dict().items():
        assert torch.equal(value, ref.state_dict()[key]), key


def test_missing_and_unexpected_keys_are_listed_and_nothing_loads(tmp_path):
    state = torchvision.models.resnet50(weights=None).state_dict()
    del state["layer4.2.bn3.running_var"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    backbone = create_backbone("resnet50")
    before = backbone.conv1.weight.clone()
    with pytest.raises(StateDictMismatchError) as info:
        backbone.load_pretrained(str(path))
    message = str(info.value)
    assert "broken.pth" in message
    assert "missing keys (layer4.2.bn3.running_var)" in message
    assert "unexpected keys (layer5.0.conv1.weight)" in message
    assert torch.equal(backbone.conv1.weight, before)


def test_shape_mismatch_is_reported(tmp_path):
    state = torchvision.models.resnet18(weights=None).state_dict()
    path = tmp_path / "r18.pth"
    torch.save(state, path)
    with pytest.raises(StateDictMismatchError, match=r"shape mismatches.*layer1\.0\.conv1\.weight"):
        create_backbone("resnet50", pretrained=str(path))


def test_multi_grid_rates_follow_the_paper():
    # DeepLab v3 §4.1: Multi_Grid = (1, 2, 4) at output stride 16 gives rates (2, 4, 8) in block4.
    backbone = create_backbone("resnet101", output_stride=16, multi_grid=(1, 2, 4))
    assert [u.conv2.dilation[0] for u in backbone.layer4] == [2, 4, 8]
    assert [u.conv2.padding[0] for u in backbone.layer4] == [2, 4, 8]
    assert all(u.conv2.stride == (1, 1) for u in backbone.layer4)
    assert backbone.layer4[0].downsample[0].stride == (1, 1)
    backbone.set_output_stride(8, (1, 2, 4))
    assert [u.conv2.dilation[0] for u in backbone.layer4] == [4, 8, 16]
    assert [u.conv2.dilation[0] for u in backbone.layer3[:2]] == [1, 2]


def test_default_dilation_is_torchvisions():
    backbone = create_backbone("resnet50", output_stride=8)
    ref = torchvision.models.resnet50(weights=None, replace_stride_with_dilation=[False, True, True])
    for name, module in backbone.named_modules():
        if isinstance(module, torch.nn.Conv2d):
            theirs = ref.get_submodule(name)
            assert (module.stride, module.dilation, module.padding) == (
                theirs.stride,
                theirs.dilation,
                theirs.padding,
            ), name


def test_set_output_stride_round_trip_restores_layout():
    backbone = create_backbone("resnet50", output_stride=32)
    layout = [(m.stride, m.dilation, m.padding) for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    backbone.set_output_stride(8)
    backbone.set_output_stride(32)
    assert layout == [(m.stride, m.dilation, m.padding) for m in backbone.modules() if isinstance(m, torch.nn.Conv2d)]


@pytest.mark.parametrize("bad", [4, 12, 64, "16"])
def test_output_stride_must_be_8_16_or_32(bad):
    with pytest.raises(ValueError, match=r"output_stride must be one of \(8, 16, 32\)"):
        create_backbone("resnet50", output_stride=bad)


@pytest.mark.parametrize("grid", [(1, 2), (1, 2, 4, 8), (1, 0, 2)])
def test_multi_grid_of_the_wrong_length_is_rejected(grid):
    with pytest.raises(ValueError, match=r"one positive rate per unit of the last stage \(3 units\)"):
        create_backbone("resnet50", output_stride=16, multi_grid=grid)


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(ValueError, match="did you mean resnet50"):
        create_backbone("resnet5")
