"""Mask R-CNN assembled from atrous backbones and torchvision's detection components."""

from __future__ import annotations

import pytest
import torch
from torchvision.models.detection import maskrcnn_resnet50_fpn
from torchvision.models.detection.backbone_utils import _resnet_fpn_extractor
from torchvision.models.detection.mask_rcnn import MaskRCNN
from torchvision.models.resnet import resnet50
from torchvision.ops.misc import FrozenBatchNorm2d

import atrous
from atrous.models import create_model, load_model, model_task
from atrous.models.mask_rcnn import MultiScaleRoIPool


def _same_outputs(a, b):
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        assert x.keys() == y.keys() == {"boxes", "labels", "scores", "masks"}
        assert len(x["boxes"]) > 0  # something to compare
        for key in x:
            torch.testing.assert_close(x[key], y[key], rtol=0, atol=0)


@pytest.fixture(scope="module")
def images():
    generator = torch.Generator().manual_seed(0)
    return [torch.rand(3, 160, 200, generator=generator), torch.rand(3, 144, 128, generator=generator)]


def test_torchvision_state_dict_loads_strict_and_gives_the_same_detections(images):
    torch.manual_seed(0)
    # a low score threshold, so that random weights still detect something to compare
    reference = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, box_score_thresh=0.0, min_size=160).eval()
    ours = create_model("maskrcnn_resnet50_fpn", box_score_thresh=0.0, min_size=160).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    assert sum(p.numel() for p in ours.parameters()) == sum(p.numel() for p in reference.parameters())
    with torch.no_grad():
        _same_outputs(reference(images), ours(images))


def test_frozen_norms_match_torchvisions_pretrained_layout(images):
    """torchvision builds its pretrained Mask R-CNN with frozen norms and 3 trainable stages."""
    torch.manual_seed(1)
    body = _resnet_fpn_extractor(resnet50(norm_layer=FrozenBatchNorm2d), 3)
    reference = MaskRCNN(body, 91, box_score_thresh=0.0, min_size=160).eval()
    ours = create_model(
        "maskrcnn_resnet50_fpn", frozen_bn=True, trainable_backbone_layers=3, box_score_thresh=0.0, min_size=160
    ).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    trainable = {n for n, p in ours.named_parameters() if p.requires_grad}
    assert trainable == {n for n, p in reference.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("backbone.body.conv1", "backbone.body.layer1")) for n in trainable)
    with torch.no_grad():
        _same_outputs(reference(images), ours(images))


def test_roipool_option_swaps_the_pooler(images):
    torch.manual_seed(2)
    align = create_model("maskrcnn_resnet18_fpn", num_classes=3, box_score_thresh=0.0, min_size=128).eval()
    pool = create_model("maskrcnn_resnet18_fpn", num_classes=3, roi_op="pool", box_score_thresh=0.0, min_size=128)
    pool.load_state_dict(align.state_dict())
    pool.eval()
    assert isinstance(pool.roi_heads.box_roi_pool, MultiScaleRoIPool)
    assert isinstance(pool.roi_heads.mask_roi_pool, MultiScaleRoIPool)
    with torch.no_grad():
        a, p = align(images[:1])[0], pool(images[:1])[0]
    assert a["masks"].shape[1:] == p["masks"].shape[1:]
    assert not torch.equal(a["scores"][:10], p["scores"][:10])  # the quantised pooling changes the heads' input


def test_training_mode_returns_the_five_losses():
    torch.manual_seed(3)
    model = create_model("maskrcnn_resnet18_fpn", num_classes=2, min_size=64, max_size=64).train()
    masks = torch.zeros(2, 64, 64, dtype=torch.uint8)
    masks[0, 10:30, 12:28] = 1
    masks[1, 40:60, 35:50] = 1
    target = {"boxes": torch.tensor([[12.0, 10, 28, 30], [35, 40, 50, 60]]), "labels": torch.ones(2, dtype=torch.long)}
    losses = model([torch.rand(3, 64, 64)], [{**target, "masks": masks}])
    assert set(losses) == {"loss_classifier", "loss_box_reg", "loss_mask", "loss_objectness", "loss_rpn_box_reg"}
    sum(losses.values()).backward()


def test_registry_tasks_and_save_load_round_trip(tmp_path, images):
    assert model_task("maskrcnn_resnet50_fpn") == "instance" and model_task("deeplabv3_resnet50") == "semantic"
    instance = atrous.list_models(task="instance")
    assert instance == ["maskrcnn_resnet101_fpn", "maskrcnn_resnet18_fpn", "maskrcnn_resnet50_fpn"]
    assert not set(instance) & set(atrous.list_models(task="semantic"))
    with pytest.raises(ValueError, match="task must be one of"):
        atrous.list_models(task="panoptic")
    torch.manual_seed(4)
    model = create_model("maskrcnn_resnet18_fpn", num_classes=3, min_size=128, box_score_thresh=0.0).eval()
    model.save_pretrained(tmp_path / "saved", metadata={"class_names": ["background", "a", "b"]})
    loaded = load_model(tmp_path / "saved")
    assert loaded.metadata["class_names"] == ["background", "a", "b"]
    with torch.no_grad():
        _same_outputs(model(images[:1]), loaded(images[:1]))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"num_classes": 1}, "background too"),
        ({"roi_op": "warp"}, "roi_op must be one of"),
        ({"anchor_sizes": [16, 32]}, "one size per FPN level"),
        ({"trainable_backbone_layers": 6}, "0..5"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        create_model("maskrcnn_resnet18_fpn", **kwargs)


def test_semantic_only_tools_refuse_instance_models_clearly(tmp_path, capsys):
    from atrous.benchmark import build_bench_model
    from atrous.cli import main
    from atrous.export import ExportError, export_model
    from atrous.inference import Predictor

    model = create_model("maskrcnn_resnet18_fpn", num_classes=2)
    with pytest.raises(ExportError, match="instance-segmentation model"):
        export_model(model, tmp_path / "m.onnx")
    assert not (tmp_path / "m.onnx").exists()
    with pytest.raises(ValueError, match="InstancePredictor"):
        Predictor(model)
    with pytest.raises(ValueError, match="atrous bench measures semantic models"):
        build_bench_model("maskrcnn_resnet18_fpn")
    assert main(["models", "maskrcnn*", "--num-classes", "2"]) == 0
    out = capsys.readouterr().out
    assert "maskrcnn_resnet50_fpn" in out and "maskrcnn_resnet18_fpn" in out
