"""Every registered model, checked the moment it is registered."""

import pytest
import torch

import atrous
from atrous.models import SegmentationModel

MODELS = atrous.list_models(task="semantic")


def test_registry_has_the_foundation_families():
    for name in [
        "fcn_resnet50",
        "fcn_resnet101",
        "deeplabv3_resnet50",
        "deeplabv3_resnet101",
        "deeplabv3plus_resnet50",
        "deeplabv3plus_resnet101",
        "pspnet_resnet50",
        "pspnet_resnet101",
    ]:
        assert name in MODELS
    assert atrous.list_models("pspnet*") == ["pspnet_resnet101", "pspnet_resnet50"]


@pytest.mark.parametrize("name", MODELS)
def test_eval_output_is_logits_at_input_size_for_odd_sizes(name):
    model = atrous.create_model(name, num_classes=3).eval()
    assert isinstance(model, SegmentationModel)
    assert model.config["name"] == name
    with torch.no_grad():
        for h, w in [(33, 47), (65, 65)]:
            out = model(torch.randn(2, 3, h, w))
            assert out.shape == (2, 3, h, w)
            assert torch.isfinite(out).all()


# Architectures without an auxiliary head; every other model must accept aux=True.
NO_AUX = {"unet", "unet_padded"}


def _create_with_aux_if_any(name, **kwargs):
    if name in NO_AUX:
        with pytest.raises(ValueError, match="aux: U-Net has no auxiliary head"):
            atrous.create_model(name, aux=True, **kwargs)
        return atrous.create_model(name, **kwargs)
    return atrous.create_model(name, aux=True, **kwargs)


@pytest.mark.parametrize("name", MODELS)
def test_training_step_with_batch_size_one(name):
    model = _create_with_aux_if_any(name, num_classes=4).train()
    x = torch.randn(1, 3, 49, 53)
    out = model(x)
    if name in NO_AUX:
        out = {"out": out, "aux": out}
    assert set(out) == {"out", "aux"}
    assert out["out"].shape == out["aux"].shape == (1, 4, 49, 53)
    loss = out["out"].logsumexp(1).mean() + model.aux_weight * out["aux"].logsumexp(1).mean()
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    # Every trainable parameter of the backbone receives gradient (nothing is disconnected).
    # FCN zero-initialises its score layers, so nothing flows below them on the first step.
    if not name.startswith("fcn") or name.startswith("fcn_"):
        dead = [n for n, p in model.backbone.named_parameters() if p.grad is None or p.grad.abs().sum() == 0]
        assert not dead, dead[:5]


@pytest.mark.parametrize("name", sorted(set(MODELS) - NO_AUX))
def test_aux_head_is_training_only_and_on_the_backbones_aux_feature(name):
    model = atrous.create_model(name, num_classes=2, aux=True)
    info = model.backbone.feature_info
    assert info[model.aux_index].module == model.backbone.aux_module
    assert info[model.aux_index].reduction == min(16, model.output_stride)
    model.eval()
    assert isinstance(model(torch.randn(1, 3, 32, 32)), torch.Tensor)


@pytest.mark.parametrize("name", MODELS)
def test_feature_info_agrees_with_the_backbone_outputs(name):
    model = atrous.create_model(name, num_classes=2).eval()
    unpadded = getattr(model, "context", 0) > 0  # its maps shrink by the valid convolutions
    size = model.input_size_for(4) if unpadded else 64
    with torch.no_grad():
        features = model.backbone(torch.randn(1, 3, size, size))
    for feature, spec in zip(features, model.backbone.feature_info, strict=True):
        assert feature.shape[1] == spec.num_chs
        if not unpadded:
            assert feature.shape[-1] == size // spec.reduction


@pytest.mark.parametrize("name", MODELS)
def test_saved_config_rebuilds_the_same_architecture(name):
    """What save_pretrained writes is enough for load_model: non-default options included."""
    options = {"unet": {"base_chs": 8}, "unet_padded": {"base_chs": 8, "upsample": "bilinear"}}
    default = {"upsample": "nearest"} if not name.startswith(("fcn8s", "fcn16s", "fcn32s", "unet")) else {}
    with torch.device("meta"):
        model = atrous.create_model(name, num_classes=3, **options.get(name, default))
        config = dict(model.config)
        rebuilt = atrous.create_model(config.pop("name"), **config)
    assert rebuilt.config == model.config
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes == {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()}
    assert [type(m).__name__ for m in model.modules()] == [type(m).__name__ for m in rebuilt.modules()]
