"""Every registered backbone keeps the protocol the heads rely on (see atrous.backbones)."""

import pytest
import torch

from atrous.backbones import BACKBONES, OUTPUT_STRIDES, create_backbone

# One small input whose sides are multiples of 32, so every reduction divides them.
H, W = 64, 96


@pytest.fixture(scope="module", params=BACKBONES)
def backbone(request):
    return request.param, create_backbone(request.param).eval()


def _layout(module):
    return [(m.stride, m.dilation, m.padding) for m in module.modules() if isinstance(m, torch.nn.Conv2d)]


def test_feature_info_matches_real_outputs_at_every_output_stride(backbone):
    name, model = backbone
    original = _layout(model)
    for output_stride in OUTPUT_STRIDES:
        model.set_output_stride(output_stride)
        assert model.output_stride == output_stride
        with torch.no_grad():
            features = model(torch.randn(1, 3, H, W))
        info = model.feature_info
        assert len(features) == len(info) >= 4, name
        for feature, spec in zip(features, info, strict=True):
            assert feature.shape[1] == spec.num_chs, (name, spec)
            assert feature.shape[-2:] == (H // spec.reduction, W // spec.reduction), (name, output_stride, spec)
        assert info.reductions() == sorted(info.reductions())
        assert info[-1].reduction == output_stride
        assert 4 in info.reductions()  # DeepLab v3+'s low-level feature
        modules = dict(model.named_modules())
        assert all(spec.module in modules for spec in info), name
        aux = info[info.index(module=model.aux_module)]
        assert aux.reduction == min(16, output_stride)
    model.set_output_stride(32)
    assert _layout(model) == original  # switching is reversible and touches no weight


def test_bad_output_stride_and_multi_grid_are_refused(backbone):
    name, model = backbone
    with pytest.raises(ValueError, match=r"output_stride must be one of \(8, 16, 32\), got 4"):
        model.set_output_stride(4)
    if not name.startswith("resnet"):
        with pytest.raises(ValueError, match="multi_grid"):
            create_backbone(name, output_stride=16, multi_grid=(1, 2, 4))


@pytest.mark.parametrize("name", BACKBONES)
def test_in_chans(name):
    model = create_backbone(name, in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32))[-1].shape[1] == model.feature_info[-1].num_chs
