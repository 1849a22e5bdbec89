"""VGG-16 backbone: torchvision equivalence, FCN's convolutionalised fc6/fc7, output stride.

References: torchvision's ``vgg16`` (same weights, same names), Long et al. 2015 §3.1
(fc layers as convolutions covering their whole input) and Chen et al. 2015 (DeepLab v1)
§3.1 (pool4/pool5 without subsampling, conv5 dilated 2×, fc6 4×).
"""

import math

import pytest
import torch
import torch.nn.functional as F
from tests.torchvision_vgg import save_state_dict, torchvision_vgg16, torchvision_vgg16_state_dict
from torch import nn

from atrous.backbones import create_backbone
from atrous.utils.state_dict import StateDictMismatchError

POOL_INDICES = [4, 9, 16, 23, 30]  # torchvision's vgg16().features
CONV5 = [24, 26, 28]
CONV4 = [17, 19, 21]


@pytest.fixture(scope="module")
def tv_state():
    return torchvision_vgg16_state_dict(seed=1)


@pytest.fixture(scope="module")
def tv_vgg(tv_state):
    return torchvision_vgg16(tv_state)


@pytest.fixture(scope="module")
def weights_file(tv_state, tmp_path_factory):
    return save_state_dict(tv_state, tmp_path_factory.mktemp("vgg") / "vgg16.pth")


@pytest.fixture(scope="module")
def fully_conv_vgg(weights_file):
    return create_backbone("vgg16", pretrained=weights_file, fully_conv=True).eval()


def test_pool_features_equal_torchvision_prefixes(tv_vgg, weights_file):
    ours = create_backbone("vgg16", pretrained=weights_file).eval()
    x = torch.randn(1, 3, 64, 96)
    with torch.no_grad():
        features = ours(x)
        assert len(features) == 5
        expected, start = x, 0
        for feature, k in zip(features, POOL_INDICES, strict=True):
            expected = tv_vgg.features[start : k + 1](expected)  # = tv_vgg.features[: k + 1](x)
            start = k + 1
            assert feature.shape == expected.shape
            assert (feature - expected).abs().max().item() <= 1e-4, k
    assert [s.module for s in ours.feature_info] == [f"features.{k}" for k in POOL_INDICES]
    assert [s.num_chs for s in ours.feature_info] == [64, 128, 256, 512, 512]
    assert [s.reduction for s in ours.feature_info] == [2, 4, 8, 16, 32]


def test_fully_conv_fc6_fc7_equal_torchvision_classifier_on_a_7x7_pool5(tv_vgg, fully_conv_vgg):
    """A 7×7 fc6 centred on a 7×7 pool5 (a 224×224 input) with padding 3 sees exactly the
    map: its centre output is torchvision's Linear fc6 on the flattened pool5 (Long et al.
    §3.1), and fc7 (1×1) on it is torchvision's second Linear."""
    assert fully_conv_vgg.fc6.kernel_size == (7, 7) and fully_conv_vgg.fc6.padding == (3, 3)
    assert fully_conv_vgg.fc7.kernel_size == (1, 1)
    pool5 = torch.relu(torch.randn(1, 512, 7, 7))  # pool5 follows a ReLU
    with torch.no_grad():
        flat = torch.flatten(tv_vgg.avgpool(pool5), 1)  # AdaptiveAvgPool2d(7) is the identity here
        fc6_ref = tv_vgg.classifier[0](flat)  # pre-activation
        fc7_ref = tv_vgg.classifier[:5](flat)  # Linear, ReLU, Dropout, Linear, ReLU (eval)
        fc6 = fully_conv_vgg.fc6(pool5)
        fc7 = torch.relu(fully_conv_vgg.fc7(torch.relu(fc6)))
    assert fc6.shape == (1, 4096, 7, 7)
    assert (fc6[0, :, 3, 3] - fc6_ref[0]).abs().max().item() <= 1e-4
    assert (fc7[0, :, 3, 3] - fc7_ref[0]).abs().max().item() <= 1e-4
    # Off-centre cells see zero padding, so they are not the classifier's output.
    assert (fc6[0, :, 0, 0] - fc6_ref[0]).abs().max().item() > 1e-2


def test_fully_conv_forward_chains_pool5_fc6_fc7(tv_vgg, fully_conv_vgg):
    x = torch.randn(1, 3, 40, 64)  # pool5: 1×2
    w6 = tv_vgg.classifier[0].weight.reshape(4096, 512, 7, 7)
    w7 = tv_vgg.classifier[3].weight[:, :, None, None]
    with torch.no_grad():
        pool5 = tv_vgg.features(x)
        fc6 = torch.relu(F.conv2d(pool5, w6, tv_vgg.classifier[0].bias, padding=3))
        expected = torch.relu(F.conv2d(fc6, w7, tv_vgg.classifier[3].bias))
        features = fully_conv_vgg(x)
    assert len(features) == 6
    assert (features[4] - pool5).abs().max().item() <= 1e-4
    assert features[5].shape == (1, 4096, 1, 2)
    assert (features[5] - expected).abs().max().item() <= 1e-4
    assert fully_conv_vgg.feature_info[-1].module == "fc7"
    assert fully_conv_vgg.feature_info[-1].num_chs == 4096
    assert fully_conv_vgg.feature_info[-1].reduction == 32


def test_fully_conv_weights_are_the_reshaped_linear_layers(tv_vgg, fully_conv_vgg):
    c = tv_vgg.classifier
    assert torch.equal(fully_conv_vgg.fc6.weight, c[0].weight.reshape(4096, 512, 7, 7))
    assert torch.equal(fully_conv_vgg.fc6.bias, c[0].bias)
    assert torch.equal(fully_conv_vgg.fc7.weight[:, :, 0, 0], c[3].weight)
    assert torch.equal(fully_conv_vgg.fc7.bias, c[3].bias)
    assert not any(k.startswith("classifier") for k in fully_conv_vgg.state_dict())


def test_fully_conv_fc6_is_dilated_4x_at_output_stride_8(fully_conv_vgg):
    # DeepLab v1 §3.1: "2× in the last three convolutional layers and 4× in the first
    # fully connected layer".
    try:
        fully_conv_vgg.set_output_stride(8)
        assert fully_conv_vgg.fc6.dilation == (4, 4) and fully_conv_vgg.fc6.padding == (12, 12)
        assert [s.reduction for s in fully_conv_vgg.feature_info] == [2, 4, 8, 8, 8, 8]
        fully_conv_vgg.set_output_stride(16)
        assert fully_conv_vgg.fc6.dilation == (2, 2) and fully_conv_vgg.fc6.padding == (6, 6)
    finally:
        fully_conv_vgg.set_output_stride(32)
    assert fully_conv_vgg.fc6.dilation == (1, 1) and fully_conv_vgg.fc6.padding == (3, 3)


def test_parameter_count_equals_torchvision_features(tv_vgg):
    ours = create_backbone("vgg16")
    expected = sum(p.numel() for p in tv_vgg.features.parameters())
    assert sum(p.numel() for p in ours.parameters()) == expected == 14_714_688


def test_strict_load_rejects_a_missing_key(tv_state, tmp_path):
    state = {k: v for k, v in tv_state.items() if k.startswith("features.")}
    del state["features.28.bias"]
    path = tmp_path / "broken.pth"
    torch.save(state, path)
    backbone = create_backbone("vgg16")
    before = backbone.features[0].weight.clone()
    with pytest.raises(StateDictMismatchError, match=r"missing keys \(features\.28\.bias\)"):
        backbone.load_pretrained(str(path))
    assert torch.equal(backbone.features[0].weight, before)


def _pool_layout(backbone):
    return [(m.kernel_size, m.stride, m.padding, m.ceil_mode) for m in backbone.features if isinstance(m, nn.MaxPool2d)]


def _conv_layout(backbone):
    return [(m.dilation, m.padding, m.stride) for m in backbone.features if isinstance(m, nn.Conv2d)]


def test_output_stride_8_is_deeplab_v1s_layout():
    backbone = create_backbone("vgg16", output_stride=8)
    for i in (23, 30):  # pool4, pool5: 3×3, stride 1, padding 1
        pool = backbone.features[i]
        assert isinstance(pool, nn.MaxPool2d)
        assert (pool.kernel_size, pool.stride, pool.padding) == (3, 1, 1), i
    for i in (4, 9, 16):
        assert (backbone.features[i].kernel_size, backbone.features[i].stride) == (2, 2), i
    for i in CONV5:
        assert backbone.features[i].dilation == (2, 2) and backbone.features[i].padding == (2, 2), i
    for i in CONV4:
        assert backbone.features[i].dilation == (1, 1) and backbone.features[i].padding == (1, 1), i
    assert [s.reduction for s in backbone.feature_info] == [2, 4, 8, 8, 8]
    assert backbone.output_stride == 8
    with torch.no_grad():
        features = backbone.eval()(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in features] == [(32, 48), (16, 24), (8, 12), (8, 12), (8, 12)]


def test_output_stride_8_equals_a_hand_built_torchvision_network(tv_state, weights_file):
    """Rebuild DeepLab v1's pool4/pool5/conv5 changes on torchvision's modules and compare."""
    layers = list(torchvision_vgg16(tv_state).features)
    for i in (23, 30):
        layers[i] = nn.MaxPool2d(3, stride=1, padding=1)
    for i in CONV5:
        layers[i].dilation, layers[i].padding = (2, 2), (2, 2)
    ref_features = nn.Sequential(*layers).eval()
    ours = create_backbone("vgg16", output_stride=8, pretrained=weights_file).eval()
    x = torch.randn(1, 3, 48, 40)
    with torch.no_grad():
        features = ours(x)
        expected, start = x, 0
        for feature, k in zip(features, POOL_INDICES, strict=True):
            expected = ref_features[start : k + 1](expected)
            start = k + 1
            assert feature.shape == expected.shape
            assert (feature - expected).abs().max().item() <= 1e-4, k
    assert features[-1].shape == (1, 512, 6, 5)  # 48×40 at stride 8


def test_output_stride_16_layout():
    backbone = create_backbone("vgg16", output_stride=16)
    assert (backbone.features[23].kernel_size, backbone.features[23].stride) == (2, 2)
    assert (backbone.features[30].kernel_size, backbone.features[30].stride, backbone.features[30].padding) == (3, 1, 1)
    assert all(backbone.features[i].dilation == (1, 1) for i in CONV4 + CONV5)
    assert [s.reduction for s in backbone.feature_info] == [2, 4, 8, 16, 16]
    with torch.no_grad():
        features = backbone.eval()(torch.randn(1, 3, 64, 96))
    assert [tuple(f.shape[-2:]) for f in features][-2:] == [(4, 6), (4, 6)]


@pytest.mark.parametrize("ceil_mode", [False, True])
def test_round_trip_32_8_32_restores_layout(ceil_mode):
    backbone = create_backbone("vgg16", ceil_mode=ceil_mode)
    pools, convs = _pool_layout(backbone), _conv_layout(backbone)
    assert pools == [(2, 2, 0, ceil_mode)] * 5
    backbone.set_output_stride(8)
    assert _pool_layout(backbone) != pools and _conv_layout(backbone) != convs
    backbone.set_output_stride(32)
    assert _pool_layout(backbone) == pools
    assert _conv_layout(backbone) == convs
    assert [s.reduction for s in backbone.feature_info] == [2, 4, 8, 16, 32]


def test_ceil_mode_pools_cover_odd_inputs():
    h, w = 33, 47
    x = torch.randn(1, 3, h, w)
    ceil = create_backbone("vgg16", ceil_mode=True).eval()
    floor = create_backbone("vgg16").eval()
    floor.load_state_dict(ceil.state_dict())
    with torch.no_grad():
        ceil_features, floor_features = ceil(x), floor(x)
    sizes = [tuple(f.shape[-2:]) for f in ceil_features]
    assert sizes == [(math.ceil(h / 2**k), math.ceil(w / 2**k)) for k in range(1, 6)]
    assert sizes == [(17, 24), (9, 12), (5, 6), (3, 3), (2, 2)]
    assert [tuple(f.shape[-2:]) for f in floor_features] == [(h // 2**k, w // 2**k) for k in range(1, 6)]
    # pool1: ceil mode only adds the last partial window (row 32, column 46) to floor's map.
    torch.testing.assert_close(ceil_features[0][..., :16, :23], floor_features[0])
    conv1 = ceil.features[:4](x)
    torch.testing.assert_close(ceil_features[0][..., 16, 23], conv1[..., 32, 46])


def test_multi_grid_is_rejected():
    with pytest.raises(ValueError, match="multi_grid"):
        create_backbone("vgg16", output_stride=8, multi_grid=(1, 2, 4))
