"""DeepLab v1 (LargeFOV), v2 (ASPP-L/S), v3 as in the paper, v3+ on Xception-65 and
MobileNetV2, and the ``upsample=`` option, checked against the papers' numbers and hand
computation."""

import pytest
import torch
import torch.nn.functional as F
from tests.helpers import randomize_norm_stats
from torch import nn

import atrous
from atrous.layers import ImagePooling, SeparableConvNormAct

# VGG-16 configuration D: the 13 3×3 convolutions (C_in, C_out).
VGG16_CONVS = [
    (3, 64),
    (64, 64),
    (64, 128),
    (128, 128),
    (128, 256),
    (256, 256),
    (256, 256),
    (256, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
    (512, 512),
]


def _capture(module, key, store):
    return module.register_forward_hook(lambda m, i, o: store.setdefault(key, o))


# --- DeepLab v1 -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def v1():
    return atrous.create_model("deeplabv1_vgg16", num_classes=21).eval()


def test_v1_large_fov_head_and_backbone(v1):
    # Table 2, DeepLab-LargeFOV: kernel 3×3, input stride 12, 1024 channels; at OS 8.
    head = v1.classifier
    assert head.fc6.kernel_size == (3, 3) and head.fc6.dilation == (12, 12) and head.fc6.padding == (12, 12)
    assert (head.fc6.in_channels, head.fc6.out_channels) == (512, 1024)
    assert head.fc7.kernel_size == (1, 1) and (head.fc7.in_channels, head.fc7.out_channels) == (1024, 1024)
    assert (head.fc8.in_channels, head.fc8.out_channels) == (1024, 21)
    assert v1.output_stride == 8
    features = v1.backbone.features
    assert [(features[i].kernel_size, features[i].stride) for i in (23, 30)] == [(3, 1), (3, 1)]
    assert [features[i].dilation for i in (24, 26, 28)] == [(2, 2)] * 3
    assert v1.upsample.mode == "bilinear" and v1.upsample.factor == 8


def test_v1_parameter_count_is_table_2s(v1):
    """DeepLab v1 Table 2 lists DeepLab-LargeFOV with 20.5M parameters."""
    vgg = sum(9 * c_in * c_out + c_out for c_in, c_out in VGG16_CONVS)
    fc6 = 9 * 512 * 1024 + 1024
    fc7 = 1024 * 1024 + 1024
    fc8 = 1024 * 21 + 21
    count = sum(p.numel() for p in v1.parameters())
    assert count == vgg + fc6 + fc7 + fc8 == 20_505_429
    assert abs(count - 20.5e6) <= 0.1e6


def test_v1_forward_is_the_head_upsampled_8x_and_cropped(v1):
    store = {}
    hook = _capture(v1.backbone, "features", store)
    x = torch.randn(1, 3, 29, 37)
    try:
        with torch.no_grad():
            out = v1(x)
            pool5 = store["features"][-1]
            assert pool5.shape[-2:] == (4, 5)  # ceil(29 / 8), ceil(37 / 8)
            scores = v1.classifier(pool5)
    finally:
        hook.remove()
    expected = F.interpolate(scores, scale_factor=8, mode="bilinear", align_corners=False)[..., :29, :37]
    assert out.shape == (1, 21, 29, 37)
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


def test_v1_output_stride_16_keeps_fc6s_field_of_view():
    model = atrous.create_model("deeplabv1_vgg16", num_classes=3)
    model.set_output_stride(16)
    assert model.classifier.fc6.dilation == (6, 6) and model.classifier.fc6.padding == (6, 6)
    assert [s.reduction for s in model.backbone.feature_info] == [2, 4, 8, 16, 16]
    assert model.upsample.factor == 16
    with torch.no_grad():
        assert model.eval()(torch.randn(1, 3, 37, 50)).shape == (1, 3, 37, 50)
    model.set_output_stride(8)
    assert model.classifier.fc6.dilation == (12, 12) and model.upsample.factor == 8


# --- DeepLab v2 -------------------------------------------------------------------------


def _branch_rates(head):
    firsts = [b if isinstance(b, nn.Conv2d) else b[0] for b in head.branches]
    assert all(c.padding == c.dilation for c in firsts)
    return tuple(c.dilation[0] for c in firsts)


@pytest.mark.parametrize(
    ("aspp", "rates_8", "rates_16"), [("L", (6, 12, 18, 24), (3, 6, 9, 12)), ("S", (2, 4, 8, 12), (1, 2, 4, 6))]
)
def test_v2_resnet101_aspp_rates(aspp, rates_8, rates_16):
    model = atrous.create_model("deeplabv2_resnet101", num_classes=5, aspp=aspp)
    head = model.classifier
    assert model.output_stride == 8 and model.config["aspp"] == aspp
    assert _branch_rates(head) == head.rates == rates_8
    # ResNet-101 branches: one 3×3 atrous convolution straight to the classes.
    assert all(isinstance(b, nn.Conv2d) and b.kernel_size == (3, 3) for b in head.branches)
    assert all((b.in_channels, b.out_channels) == (2048, 5) for b in head.branches)
    model.set_output_stride(16)
    assert _branch_rates(head) == head.rates == rates_16
    assert model.backbone.output_stride == 16
    model.set_output_stride(8)
    assert _branch_rates(head) == rates_8


def test_v2_vgg16_branches_are_fc6_fc7_fc8():
    model = atrous.create_model("deeplabv2_vgg16", num_classes=4)
    assert _branch_rates(model.classifier) == (6, 12, 18, 24)
    for branch in model.classifier.branches:
        convs = [m for m in branch if isinstance(m, nn.Conv2d)]
        assert [(c.kernel_size[0], c.in_channels, c.out_channels) for c in convs] == [
            (3, 512, 1024),
            (1, 1024, 1024),
            (1, 1024, 4),
        ]
    assert model.backbone.ceil_mode and model.upsample.factor == 8


def test_v2_output_is_the_sum_of_the_branches():
    """§3.3, Fig. 4: each branch predicts class scores; the scores are summed, then
    resized bilinearly to the input."""
    model = atrous.create_model("deeplabv2_resnet101", num_classes=3, aspp="S")
    randomize_norm_stats(model).eval()
    with torch.no_grad():
        for branch in model.classifier.branches:
            branch.bias.uniform_(-1, 1)  # zero-initialised; make a wiring error visible
    store = {}
    hook = _capture(model.backbone, "features", store)
    x = torch.randn(1, 3, 33, 41)
    try:
        with torch.no_grad():
            out = model(x)
    finally:
        hook.remove()
    f = store["features"][-1]
    assert f.shape[-2:] == (5, 6)  # output stride 8
    with torch.no_grad():
        scores = sum(
            F.conv2d(f, b.weight, b.bias, padding=r, dilation=r)
            for b, r in zip(model.classifier.branches, (2, 4, 8, 12), strict=True)
        )
        # Calling the branches gives the same sum.
        torch.testing.assert_close(sum(b(f) for b in model.classifier.branches), scores)
    expected = F.interpolate(scores, size=(33, 41), mode="bilinear", align_corners=False)
    scale = expected.abs().max().item()
    assert scale > 0
    assert (out - expected).abs().max().item() <= 1e-5 * scale


def test_v2_vgg16_output_is_the_sum_of_the_branches_upsampled_8x():
    model = atrous.create_model("deeplabv2_vgg16", num_classes=3, aspp="S").eval()
    store = {}
    hook = _capture(model.backbone, "features", store)
    x = torch.randn(1, 3, 36, 50)
    try:
        with torch.no_grad():
            out = model(x)
            f = store["features"][-1]
            scores = sum(b(f) for b in model.classifier.branches)
    finally:
        hook.remove()
    assert f.shape[-2:] == (5, 7)
    expected = F.interpolate(scores, scale_factor=8, mode="bilinear", align_corners=False)[..., :36, :50]
    torch.testing.assert_close(out, expected, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("name", ["deeplabv2_resnet101", "deeplabv2_vgg16"])
def test_v2_rejects_an_unknown_aspp(name):
    with pytest.raises(ValueError, match=r"aspp must be 'L' .* or 'S'.*got 'M'"):
        atrous.create_model(name, aspp="M")


# --- DeepLab v3 as the paper specifies it -----------------------------------------------


@pytest.fixture(scope="module")
def v3_paper():
    return atrous.create_model("deeplabv3_paper_resnet50", num_classes=4)


def test_v3_paper_multi_grid_and_aspp_rates(v3_paper):
    # §4.1: Multi_Grid (1, 2, 4) with the block's rate 2 at OS 16 → (2, 4, 8);
    # §3.3: ASPP (6, 12, 18) at OS 16, doubled at 8.
    model = v3_paper
    assert model.config["multi_grid"] == [1, 2, 4]
    assert [u.conv2.dilation[0] for u in model.backbone.layer4] == [2, 4, 8]
    assert model.classifier[0].rates == (6, 12, 18)
    assert [b.conv.dilation[0] for b in model.classifier[0].convs[1:4]] == [6, 12, 18]
    try:
        model.set_output_stride(8)
        assert [u.conv2.dilation[0] for u in model.backbone.layer4] == [4, 8, 16]
        assert [u.conv2.dilation[0] for u in model.backbone.layer3[1:]] == [2] * 5
        assert model.classifier[0].rates == (12, 24, 36)
        assert [b.conv.dilation[0] for b in model.classifier[0].convs[1:4]] == [12, 24, 36]
    finally:
        model.set_output_stride(16)
    assert model.classifier[0].rates == (6, 12, 18)


def test_v3_paper_head_has_no_3x3_between_aspp_and_classifier(v3_paper):
    head = v3_paper.classifier
    assert len(head) == 2
    aspp, classify = head
    assert isinstance(classify, nn.Conv2d) and classify.kernel_size == (1, 1)
    assert (classify.in_channels, classify.out_channels) == (256, 4)
    # ASPP: 1×1, three 3×3 atrous, image pooling → concat (5 × 256) → 1×1 256 + BN.
    assert len(aspp.convs) == 5
    assert aspp.convs[0].conv.kernel_size == (1, 1)
    assert [b.conv.kernel_size for b in aspp.convs[1:4]] == [(3, 3)] * 3
    assert isinstance(aspp.convs[4], ImagePooling)
    project = aspp.project
    assert project[0].kernel_size == (1, 1) and (project[0].in_channels, project[0].out_channels) == (1280, 256)
    assert isinstance(project[1], nn.BatchNorm2d)
    assert [m.p for m in project if isinstance(m, nn.Dropout)] == [0.1]
    # torchvision's layout (deeplabv3_resnet50) has an extra 3×3 conv + BN + ReLU there.
    tv_layout = atrous.create_model("deeplabv3_resnet50", num_classes=4).classifier
    assert isinstance(tv_layout[1], nn.Conv2d) and tv_layout[1].kernel_size == (3, 3)
    with torch.no_grad():
        assert v3_paper.eval()(torch.randn(1, 3, 33, 47)).shape == (1, 4, 33, 47)


def test_v3_paper_multi_grid_can_be_overridden():
    model = atrous.create_model("deeplabv3_paper_resnet101", num_classes=3, multi_grid=(1, 1, 1))
    assert [u.conv2.dilation[0] for u in model.backbone.layer4] == [2, 2, 2]
    assert len(model.backbone.layer3) == 23  # ResNet-101


# --- DeepLab v3+ ------------------------------------------------------------------------


def test_v3plus_xception65_is_separable_with_a_stride_4_decoder():
    model = atrous.create_model("deeplabv3plus_xception65", num_classes=3).eval()
    head = model.classifier
    assert model.config["separable"] is True
    assert [type(b) for b in head.aspp.convs[1:4]] == [SeparableConvNormAct] * 3
    assert [b.conv_dw.dilation[0] for b in head.aspp.convs[1:4]] == [6, 12, 18]
    assert all(b.conv_dw.groups == b.conv_dw.in_channels for b in head.aspp.convs[1:4])
    assert [type(m) for m in head.fuse] == [SeparableConvNormAct] * 2
    low_index, high_index = model.classifier_indices
    info = model.backbone.feature_info
    assert info[low_index].reduction == 4 and info[high_index].reduction == 16
    assert head.low_level.conv.in_channels == info[low_index].num_chs
    assert head.low_level.conv.out_channels == 48
    store = {}
    hooks = [_capture(head.fuse, "fused", store), _capture(head.aspp, "aspp", store)]
    try:
        with torch.no_grad():
            out = model(torch.randn(1, 3, 64, 80))
    finally:
        for hook in hooks:
            hook.remove()
    assert store["aspp"].shape == (1, 256, 4, 5)
    assert store["fused"].shape == (1, 256, 16, 20)
    assert out.shape == (1, 3, 64, 80)


@pytest.mark.parametrize("name", ["deeplabv3_mobilenetv2", "deeplabv3plus_mobilenetv2"])
def test_mobilenetv2_aspp_has_no_atrous_branches(name):
    model = atrous.create_model(name, num_classes=3).eval()
    aspp = model.classifier[0] if name.startswith("deeplabv3_") else model.classifier.aspp
    assert aspp.rates == ()
    assert len(aspp.convs) == 2 and isinstance(aspp.convs[1], ImagePooling)
    assert aspp.convs[0].conv.kernel_size == (1, 1)
    assert not [m for m in aspp.modules() if isinstance(m, nn.Conv2d) and m.kernel_size != (1, 1)]
    assert aspp.project[0].in_channels == 2 * 256
    with torch.no_grad():
        assert model(torch.randn(1, 3, 45, 67)).shape == (1, 3, 45, 67)


# --- upsample= ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["deeplabv3plus_resnet18", "deeplabv3_resnet18"])
def test_transposed_upsampling_pins_the_output_stride(name):
    model = atrous.create_model(name, num_classes=3, upsample="transposed").eval()
    assert [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    layout = [(m.stride, m.dilation) for m in model.modules() if isinstance(m, nn.Conv2d)]
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"learned ×\d+ .*tied to output stride 16"):
        model.set_output_stride(8)
    assert model.backbone.output_stride == 16 and model.output_stride == 16
    assert model.config["output_stride"] == 16
    aspp = model.classifier.aspp if name.startswith("deeplabv3plus") else model.classifier[0]
    assert aspp.rates == (6, 12, 18)
    assert layout == [(m.stride, m.dilation) for m in model.modules() if isinstance(m, nn.Conv2d)]
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key
    model.set_output_stride(16)  # its own stride is fine
    with torch.no_grad():
        assert model(torch.randn(1, 3, 65, 49)).shape == (1, 3, 65, 49)


def test_v3plus_nearest_switches_output_stride_and_upsamples_by_repetition():
    model = atrous.create_model("deeplabv3plus_resnet18", num_classes=3, upsample="nearest").eval()
    head = model.classifier
    assert head.up.mode == "nearest" and head.up.factor == 4
    assert model.upsample.mode == "nearest" and model.upsample.factor == 4
    model.set_output_stride(8)
    assert model.backbone.output_stride == 8 and head.aspp.rates == (12, 24, 36)
    assert head.up.factor == 2 and model.upsample.factor == 4  # logits stay at stride 4
    store = {}
    hooks = [
        _capture(head.aspp, "aspp", store),
        head.fuse.register_forward_pre_hook(lambda m, args: store.setdefault("fuse_in", args[0])),
    ]
    try:
        with torch.no_grad():
            out = model(torch.randn(1, 3, 65, 49))
    finally:
        for hook in hooks:
            hook.remove()
    assert out.shape == (1, 3, 65, 49)
    aspp, fuse_in = store["aspp"], store["fuse_in"]
    assert aspp.shape[-2:] == (9, 7)  # ceil(65 / 8), ceil(49 / 8)
    assert fuse_in.shape[-2:] == (17, 13)  # stride 4
    expected = aspp.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :17, :13]
    assert torch.equal(fuse_in[:, :256], expected)


def test_unknown_upsample_mode_is_rejected():
    with pytest.raises(ValueError, match="upsample must be one of bilinear, nearest, transposed"):
        atrous.create_model("deeplabv3plus_resnet18", upsample="bicubic")


# --- save_pretrained / load_model -------------------------------------------------------


def test_save_and_load_round_trip_keeps_non_default_options(tmp_path):
    model = atrous.create_model("deeplabv2_resnet101", num_classes=3, aspp="S", output_stride=16)
    randomize_norm_stats(model).eval()
    x = torch.randn(1, 3, 33, 33)
    with torch.no_grad():
        expected = model(x)
    model.save_pretrained(tmp_path / "v2s")
    loaded = atrous.load_model(tmp_path / "v2s")
    assert loaded.config["aspp"] == "S" and loaded.output_stride == 16
    assert loaded.classifier.rates == (1, 2, 4, 6)
    with torch.no_grad():
        assert torch.equal(loaded(x), expected)
