import pytest
import torch
from torch import nn

from atrous import backbones
from atrous.backbones import mobilenetv2, resnet, vgg, xception
from atrous.backbones.base import OUTPUT_STRIDES, Backbone
from atrous.backbones.features import FeatureSpec


class _Tiny(Backbone):
    """Two stride-2 convolutions, enough to exercise the template."""

    aux_module = "conv1"

    def build(self, in_chans: int) -> None:
        self.conv1 = nn.Conv2d(in_chans, 4, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(4, 8, 3, stride=2, padding=1)

    def _set_strides(self, output_stride, multi_grid):
        self.conv2.stride = (1, 1) if output_stride < 4 else (2, 2)
        return [FeatureSpec(4, 2, "conv1"), FeatureSpec(8, 4, "conv2")]

    def forward(self, x):
        a = self.conv1(x)
        return [a, self.conv2(a)]


def test_one_output_stride_table_for_every_family():
    for module in (backbones, resnet, vgg, mobilenetv2, xception):
        assert module.OUTPUT_STRIDES is OUTPUT_STRIDES
    for name in backbones.BACKBONES:
        assert isinstance(backbones.create_backbone(name, in_chans=1), Backbone), name


def test_the_template_builds_initialises_and_sets_the_stride():
    model = _Tiny(in_chans=2, output_stride=16)
    assert model.in_chans == 2 and model.output_stride == 16
    assert model.feature_info.channels() == [4, 8]
    assert torch.count_nonzero(model.conv1.bias) == 0  # init_weights ran after build
    assert [f.shape[1] for f in model(torch.zeros(1, 2, 8, 8))] == [4, 8]


def test_refused_arguments_leave_the_backbone_as_it_was():
    model = _Tiny()
    with pytest.raises(ValueError, match=r"output_stride must be one of \(8, 16, 32\), got 4"):
        model.set_output_stride(4)
    with pytest.raises(ValueError, match="_Tiny has no multi-grid units"):
        model.set_output_stride(8, (1, 2))
    assert model.output_stride == 32


def test_the_contract_is_abstract():
    with pytest.raises(TypeError, match="abstract"):
        Backbone()  # type: ignore[abstract]


def test_with_weights_loads_strict_and_returns_the_backbone(tmp_path):
    source = _Tiny()
    path = tmp_path / "tiny.pth"
    torch.save({**source.state_dict(), "fc.weight": torch.zeros(1)}, path)
    target = _Tiny()
    target.classifier_prefixes = ("fc.",)
    assert target.with_weights(str(path)) is target
    torch.testing.assert_close(target.conv2.weight, source.conv2.weight)
    assert _Tiny().with_weights(None).output_stride == 32
