import pytest
import torch

import atrous


@pytest.mark.parametrize("name", ["deeplabv3_resnet50", "deeplabv3plus_resnet18", "pspnet_resnet50", "fcn_resnet50"])
def test_set_output_stride_keeps_weights_and_changes_feature_size(name):
    model = atrous.create_model(name, num_classes=3, output_stride=16).eval()
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert model.backbone(x)[-1].shape[-1] == 4
        model.set_output_stride(8)
        assert model.backbone(x)[-1].shape[-1] == 8
        assert model(x).shape == (1, 3, 64, 64)
    assert model.output_stride == 8 and model.config["output_stride"] == 8
    for key, value in model.state_dict().items():
        assert torch.equal(value, weights[key]), key


def test_switching_16_to_8_equals_a_model_built_at_8():
    trained = atrous.create_model("deeplabv3_resnet50", num_classes=3, output_stride=16, multi_grid=(1, 2, 4))
    trained.set_output_stride(8)
    built = atrous.create_model("deeplabv3_resnet50", num_classes=3, output_stride=8, multi_grid=(1, 2, 4))
    built.load_state_dict(trained.state_dict())
    convs = lambda m: [(c.stride, c.dilation, c.padding) for c in m.modules() if isinstance(c, torch.nn.Conv2d)]  # noqa: E731
    assert convs(trained) == convs(built)
    assert trained.classifier[0].rates == (12, 24, 36)  # §3.3: doubled at output stride 8
    x = torch.randn(1, 3, 49, 49)
    with torch.no_grad():
        torch.testing.assert_close(trained.eval()(x), built.eval()(x))


def test_aspp_rates_follow_output_stride():
    assert atrous.create_model("deeplabv3_resnet50", output_stride=16).classifier[0].rates == (6, 12, 18)
    assert atrous.create_model("deeplabv3_resnet50", output_stride=8).classifier[0].rates == (12, 24, 36)
    assert atrous.create_model("deeplabv3plus_resnet50", output_stride=8).classifier.aspp.rates == (12, 24, 36)


def test_issue_example_builds_the_papers_deeplabv3():
    model = atrous.create_model("deeplabv3_resnet101", num_classes=21, output_stride=16, multi_grid=(1, 2, 4))
    assert [u.conv2.dilation[0] for u in model.backbone.layer4] == [2, 4, 8]
    assert model.backbone.feature_info[-1].reduction == 16
    assert model.output_stride == 16


def test_deeplabv3plus_decoder_shapes():
    model = atrous.create_model("deeplabv3plus_resnet50", num_classes=5).eval()
    head = model.classifier
    assert head.low_level.conv.out_channels == 48
    assert head.low_level.conv.in_channels == 256  # ResNet-50 layer1, stride 4
    assert [m.conv.kernel_size for m in head.fuse] == [(3, 3), (3, 3)]
    assert head.fuse[0].conv.in_channels == 256 + 48
    captured = {}
    head.fuse.register_forward_hook(lambda m, i, o: captured.setdefault("fused", o))
    with torch.no_grad():
        model(torch.randn(1, 3, 128, 96))
    assert captured["fused"].shape == (1, 256, 32, 24)  # stride 4: ×4 upsampling to go


def test_pspnet_head_is_the_papers():
    model = atrous.create_model("pspnet_resnet50", num_classes=5)
    assert model.output_stride == 8
    ppm = model.classifier[0]
    assert ppm.bins == (1, 2, 3, 6) and ppm.out_chs == 4096
    assert model.aux_classifier is not None and model.aux_weight == 0.4
    assert model.aux_classifier[0].in_channels == 1024
