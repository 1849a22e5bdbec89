"""FCN-32s/16s/8s on VGG-16 (Long et al. 2015): skip fusion, bilinear-initialised upsampling,
zero-initialised score layers (§4.3), exact output sizes, torchvision weights."""

import copy

import pytest
import torch
import torch.nn.functional as F
from tests.torchvision_vgg import save_state_dict, torchvision_vgg16_state_dict
from torch import nn

import atrous
from atrous.layers import bilinear_kernel

ODD_SIZES = [(33, 47), (5, 9), (17, 63)]


def _bilinear(x, factor):
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


@pytest.fixture(scope="module")
def fcn8s():
    return atrous.create_model("fcn8s_vgg16", num_classes=3).eval()


@pytest.fixture(scope="module")
def fcn16s_learned():
    return atrous.create_model("fcn16s_vgg16", num_classes=3, learn_final_upsampling=True).eval()


@pytest.fixture(scope="module")
def tv_state():
    return torchvision_vgg16_state_dict(seed=2)


@pytest.fixture(scope="module")
def fcn32s_bilinear_pretrained(tv_state, tmp_path_factory):
    path = save_state_dict(tv_state, tmp_path_factory.mktemp("fcn") / "vgg16.pth")
    return atrous.create_model("fcn32s_vgg16", num_classes=3, upsample="bilinear", pretrained_backbone=path).eval()


def test_fresh_model_predicts_zero(fcn8s):
    # §4.3: "zero-initialization of the class scoring layer".
    head = fcn8s.classifier
    for layer in (head.score_fr, head.score_pool4, head.score_pool3):
        assert not layer.weight.any() and not layer.bias.any()
    with torch.no_grad():
        out = fcn8s(torch.randn(1, 3, 45, 61))
    assert out.shape == (1, 3, 45, 61)
    assert not out.any()


def test_fcn8s_untrained_upsampling_is_bilinear_interpolation(fcn8s):
    """Before training, every transposed convolution is bilinear interpolation: the model
    equals the skip architecture of Fig. 3 written with F.interpolate and crops."""
    head = fcn8s.classifier
    layers = {"fr": head.score_fr, "pool4": head.score_pool4, "pool3": head.score_pool3}
    saved = {k: copy.deepcopy(v.state_dict()) for k, v in layers.items()}
    g = torch.Generator().manual_seed(3)
    weights = {}
    captured = {}
    hook = fcn8s.backbone.register_forward_hook(lambda m, i, o: captured.setdefault("features", o))
    h, w = 70, 75  # crops at every stage: 3×3 ×2 → 5×5; 5×5 ×2 → 9×10; 9×10 ×8 → 70×75
    x = torch.randn(1, 3, h, w)
    try:
        with torch.no_grad():
            for name, layer in layers.items():
                weights[name] = (
                    torch.randn(layer.weight.shape, generator=g) * 0.05,
                    torch.randn(layer.bias.shape, generator=g),
                )
                layer.weight.copy_(weights[name][0])
                layer.bias.copy_(weights[name][1])
            out = fcn8s(x)
    finally:
        hook.remove()
        for name, layer in layers.items():
            layer.load_state_dict(saved[name])
    features = captured["features"]
    pool3, pool4, fc7 = features[2], features[3], features[5]
    assert pool3.shape[-2:] == (9, 10) and pool4.shape[-2:] == (5, 5) and fc7.shape[-2:] == (3, 3)
    s32 = F.conv2d(fc7, *weights["fr"])
    s16 = _bilinear(s32, 2)[..., :5, :5] + F.conv2d(pool4, *weights["pool4"])
    s8 = _bilinear(s16, 2)[..., :9, :10] + F.conv2d(pool3, *weights["pool3"])
    expected = _bilinear(s8, 8)[..., :h, :w]
    assert out.shape == (1, 3, h, w)
    assert expected.abs().max() > 1  # a non-trivial comparison
    assert (out - expected).abs().max().item() <= 1e-4
    # Resizing the stride-8 scores to 70×75 (instead of ×8 then cropping) is not the same.
    assert (out - F.interpolate(s8, size=(h, w), mode="bilinear")).abs().max().item() > 1e-2


def test_upsamplings_start_bilinear_and_only_the_2x_ones_learn(fcn8s, fcn16s_learned):
    head = fcn8s.classifier
    for up in (head.upscore2, head.upscore_pool4):
        assert up.factor == 2 and up.mode == "transposed"
        assert up.deconv.weight.requires_grad
        torch.testing.assert_close(up.deconv.weight[0, 0], bilinear_kernel(4))
    final = fcn8s.upsample
    assert final.factor == 8 and final.mode == "transposed"
    assert not final.deconv.weight.requires_grad  # fixed to bilinear by default
    torch.testing.assert_close(final.deconv.weight[2, 0], bilinear_kernel(16))
    assert fcn16s_learned.upsample.factor == 16
    assert fcn16s_learned.upsample.deconv.weight.requires_grad
    assert fcn16s_learned.config["learn_final_upsampling"] is True
    assert fcn8s.config["learn_final_upsampling"] is False


def test_skip_layers_read_pool3_and_pool4(fcn8s, fcn16s_learned):
    head = fcn8s.classifier
    assert head.score_pool3.in_channels == 256 and head.score_pool4.in_channels == 512
    assert head.score_fr.in_channels == 4096
    info = fcn8s.backbone.feature_info
    assert [info[i].module for i in fcn8s.classifier_indices] == ["features.16", "features.23", "fc7"]
    info = fcn16s_learned.backbone.feature_info
    assert [info[i].module for i in fcn16s_learned.classifier_indices] == ["features.23", "fc7"]
    assert not hasattr(fcn16s_learned.classifier, "score_pool3")


@pytest.mark.parametrize("size", ODD_SIZES)
def test_output_is_the_input_size(size, fcn8s, fcn16s_learned, fcn32s_bilinear_pretrained):
    x = torch.randn(1, 3, *size)
    with torch.no_grad():
        for model in (fcn8s, fcn16s_learned, fcn32s_bilinear_pretrained):
            assert model(x).shape == (1, 3, *size), model.config["name"]


def test_output_stride_is_fixed(fcn8s):
    with pytest.raises(ValueError, match="pool3 and pool4"):
        fcn8s.set_output_stride(16)
    with pytest.raises(ValueError, match="pool3 and pool4"):
        fcn8s.set_output_stride(8)
    fcn8s.set_output_stride(32)  # a no-op
    assert fcn8s.output_stride == 32
    assert fcn8s.backbone.features[23].stride == 2
    with pytest.raises(ValueError, match="output stride 32"):
        atrous.create_model("fcn16s_vgg16", num_classes=3, output_stride=16)


def test_bilinear_variant_has_no_transposed_convolution(fcn32s_bilinear_pretrained):
    model = fcn32s_bilinear_pretrained
    assert not [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert model.upsample.mode == "bilinear" and model.upsample.factor == 32
    layer = model.classifier.score_fr
    with torch.no_grad():
        layer.weight.normal_(std=0.05)
        layer.bias.normal_()
    x = torch.randn(1, 3, 40, 75)
    with torch.no_grad():
        fc7 = model.backbone(x)[-1]
        assert fc7.shape[-2:] == (2, 3)
        expected = _bilinear(layer(fc7), 32)[..., :40, :75]
        assert (model(x) - expected).abs().max().item() <= 1e-4


def test_pretrained_backbone_takes_torchvision_weights(tv_state, fcn32s_bilinear_pretrained):
    backbone = fcn32s_bilinear_pretrained.backbone
    assert torch.equal(backbone.fc6.weight, tv_state["classifier.0.weight"].reshape(4096, 512, 7, 7))
    assert torch.equal(backbone.fc6.bias, tv_state["classifier.0.bias"])
    assert torch.equal(backbone.fc7.weight.flatten(1), tv_state["classifier.3.weight"])
    assert torch.equal(backbone.fc7.bias, tv_state["classifier.3.bias"])
    assert torch.equal(backbone.features[28].weight, tv_state["features.28.weight"])
    assert all(m.ceil_mode for m in backbone.features if isinstance(m, nn.MaxPool2d))
