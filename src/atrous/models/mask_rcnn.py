"""Mask R-CNN (He et al. 2017) on a ResNet-FPN from :mod:`atrous.backbones`.

The network is assembled from torchvision's detection components rather than rewritten:
the Feature Pyramid Network (Lin et al. 2017) over ResNet stages 2–5 with a max-pooled
sixth level, the Region Proposal Network (Ren et al. 2015) with three aspect ratios
per level, and the RoI heads — a two-layer MLP box head and the four-convolution,
28×28 mask head of Mask R-CNN §3 ("Network Architecture", Fig. 4 right) — fed by
:class:`torchvision.ops.MultiScaleRoIAlign`. Module names are torchvision's
(``backbone.body``, ``backbone.fpn``, ``rpn``, ``roi_heads``), so a state dict of
torchvision's ``maskrcnn_resnet50_fpn`` loads strict into ``maskrcnn_resnet50_fpn`` and
gives the same boxes, scores and masks (tested).

``roi_op="pool"`` swaps RoIAlign for the quantised RoIPool of Fast R-CNN, for the
comparison of Mask R-CNN §3 and Table 2c (RoIAlign's gain comes from not rounding the
RoI and its bins to the feature grid). The readable versions of both operations, in plain
tensor arithmetic, are :func:`atrous.layers.roi_align` and :func:`atrous.layers.roi_pool`;
the model uses torchvision's compiled kernels, which those are tested against.

Normalisation follows torchvision: batch norms become frozen affine maps
(``frozen_bn=True``) when fine-tuning from pretrained weights — the usual choice with one
or two images per GPU — and stay ordinary batch norms when training from scratch.
torchvision's pretrained COCO checkpoint (``maskrcnn_resnet50_fpn_coco-bf2d0c1e.pth``)
was trained with frozen norms of epsilon 0: build with ``frozen_bn=True, frozen_bn_eps=0``
to reproduce its outputs.

Images go in as a list of (3, H, W) float tensors in [0, 1]; the model resizes (shorter
side ``min_size``, longer at most ``max_size``) and normalises them itself, and returns
boxes in the input's pixel coordinates.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torchvision.models.detection import MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.ops import MultiScaleRoIAlign, roi_pool
from torchvision.ops.feature_pyramid_network import FeaturePyramidNetwork, LastLevelMaxPool
from torchvision.ops.misc import FrozenBatchNorm2d
from torchvision.ops.poolers import _convert_to_roi_format, _filter_input, _setup_scales

from ..backbones import create_backbone
from ._registry import register_model
from .pretrained import PretrainedMixin, records_config

ROI_OPS = ("align", "pool")
# torchvision's MaskRCNN defaults, repeated so that a saved config rebuilds the same model.
DEFAULT_ANCHOR_SIZES = (32, 64, 128, 256, 512)


class ResNetFPN(nn.Module):
    """ResNet stages 2–5 → FPN with P6 by max pooling; 256 channels at strides 4–64.

    Attribute names (``body``, ``fpn``, ``out_channels``) are those of torchvision's
    ``BackboneWithFPN``. ``trainable_layers`` counts from the top as torchvision does
    (3: ``layer2``–``layer4`` train, the stem and ``layer1`` are frozen; 5: all train).
    """

    def __init__(self, body: nn.Module, *, out_channels: int = 256, trainable_layers: int = 3) -> None:
        super().__init__()
        if not 0 <= trainable_layers <= 5:
            raise ValueError(f"trainable_backbone_layers must be in 0..5, got {trainable_layers}")
        self.body = body
        trainable = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
        if trainable_layers == 5:
            trainable.append("bn1")
        for name, param in body.named_parameters():
            if all(not name.startswith(layer) for layer in trainable):
                param.requires_grad_(False)
        in_channels = [spec.num_chs for spec in body.feature_info][1:]  # layer1 … layer4
        self.fpn = FeaturePyramidNetwork(in_channels, out_channels, extra_blocks=LastLevelMaxPool())
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> OrderedDict[str, torch.Tensor]:
        stages = self.body(x)[1:]  # drop the stem; strides 4, 8, 16, 32
        return self.fpn(OrderedDict((str(i), feature) for i, feature in enumerate(stages)))


class MultiScaleRoIPool(MultiScaleRoIAlign):
    """FPN level assignment as :class:`~torchvision.ops.MultiScaleRoIAlign` (FPN eq. 1),
    then the quantised RoIPool at the assigned level instead of RoIAlign."""

    def forward(
        self, x: dict[str, torch.Tensor], boxes: list[torch.Tensor], image_shapes: list[tuple[int, int]]
    ) -> torch.Tensor:
        features = _filter_input(x, self.featmap_names)
        if self.scales is None or self.map_levels is None:
            self.scales, self.map_levels = _setup_scales(
                features, image_shapes, self.canonical_scale, self.canonical_level
            )
        rois = _convert_to_roi_format(boxes)
        levels = self.map_levels(boxes)
        first = features[0]
        result = first.new_zeros((len(rois), first.shape[1], *self.output_size))
        for level, (feature, scale) in enumerate(zip(features, self.scales, strict=True)):
            index = torch.where(levels == level)[0]
            pooled = roi_pool(feature, rois[index], self.output_size, spatial_scale=scale)
            result[index] = pooled.to(result.dtype)
        return result


def _roi_pooler(op: str, output_size: int) -> MultiScaleRoIAlign:
    featmaps = ["0", "1", "2", "3"]
    if op == "align":
        return MultiScaleRoIAlign(featmaps, output_size, sampling_ratio=2)
    return MultiScaleRoIPool(featmaps, output_size, sampling_ratio=0)


class MaskRCNNModel(PretrainedMixin, MaskRCNN):
    """torchvision's :class:`~torchvision.models.detection.MaskRCNN` plus what atrous keeps
    with every model (:class:`~atrous.models.pretrained.PretrainedMixin`): the build
    ``config`` (for ``save_pretrained``/``load_model``), ``metadata`` (class names), and
    ``task`` (``"instance"``, registered with the model: how train/eval/predict know what
    to do with it)."""

    def __init__(self, backbone: nn.Module, num_classes: int, **kwargs: Any) -> None:
        super().__init__(backbone, num_classes=num_classes, **kwargs)
        self.config: dict[str, Any] = {"num_classes": num_classes}
        self.metadata: dict[str, Any] = {}
        self.num_classes = num_classes


def _create_maskrcnn(
    backbone_name: str,
    *,
    pretrained_backbone: str | None = None,
    trainable_backbone_layers: int | None = None,
    frozen_bn: bool | None = None,
    **options: Any,
) -> MaskRCNNModel:
    """torchvision's rules, resolved before the options are recorded: frozen norms and 3
    trainable stages when starting from pretrained weights, none frozen otherwise."""
    pretrained = pretrained_backbone is not None
    return _build_maskrcnn(
        backbone_name,
        pretrained_backbone,
        trainable_backbone_layers=(3 if pretrained else 5)
        if trainable_backbone_layers is None
        else trainable_backbone_layers,
        frozen_bn=pretrained if frozen_bn is None else frozen_bn,
        **options,
    )


@records_config
def _build_maskrcnn(
    backbone_name: str,
    pretrained_backbone: str | None,
    /,
    *,
    num_classes: int = 91,
    trainable_backbone_layers: int,
    frozen_bn: bool,
    frozen_bn_eps: float = 1e-5,
    roi_op: str = "align",
    anchor_sizes: Sequence[int] = DEFAULT_ANCHOR_SIZES,
    min_size: int = 800,
    max_size: int = 1333,
    box_detections_per_img: int = 100,
    box_score_thresh: float = 0.05,
    rpn_batch_size_per_image: int = 256,
    box_batch_size_per_image: int = 512,
    **kwargs: Any,
) -> MaskRCNNModel:
    if num_classes < 2:
        raise ValueError(f"num_classes counts the background too, so it must be >= 2; got {num_classes}")
    if roi_op not in ROI_OPS:
        raise ValueError(f"roi_op must be one of {', '.join(ROI_OPS)}, got {roi_op!r}")
    if len(anchor_sizes) != 5:
        raise ValueError(f"anchor_sizes needs one size per FPN level (5: P2–P6), got {tuple(anchor_sizes)}")
    if frozen_bn:

        def norm_layer(channels: int) -> nn.Module:
            return FrozenBatchNorm2d(channels, eps=frozen_bn_eps)
    else:
        norm_layer = nn.BatchNorm2d
    body = create_backbone(backbone_name, output_stride=32, pretrained=pretrained_backbone, norm_layer=norm_layer)
    backbone = ResNetFPN(body, trainable_layers=trainable_backbone_layers)
    anchors = AnchorGenerator(tuple((int(s),) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    return MaskRCNNModel(
        backbone,
        num_classes,
        rpn_anchor_generator=anchors,
        box_roi_pool=_roi_pooler(roi_op, 7),
        mask_roi_pool=_roi_pooler(roi_op, 14),
        min_size=min_size,
        max_size=max_size,
        box_detections_per_img=box_detections_per_img,
        box_score_thresh=box_score_thresh,
        rpn_batch_size_per_image=rpn_batch_size_per_image,
        box_batch_size_per_image=box_batch_size_per_image,
        **kwargs,
    )


@register_model(task="instance")
def maskrcnn_resnet50_fpn(**kwargs: Any) -> MaskRCNNModel:
    """Mask R-CNN, ResNet-50-FPN (He et al. 2017 §3, §4): torchvision's
    ``maskrcnn_resnet50_fpn``, name for name (91 COCO classes by default)."""
    return _create_maskrcnn("resnet50", **kwargs)


@register_model(task="instance")
def maskrcnn_resnet101_fpn(**kwargs: Any) -> MaskRCNNModel:
    """Mask R-CNN, ResNet-101-FPN (He et al. 2017, Table 2a/3)."""
    return _create_maskrcnn("resnet101", **kwargs)


@register_model(task="instance")
def maskrcnn_resnet18_fpn(**kwargs: Any) -> MaskRCNNModel:
    """Mask R-CNN on ResNet-18-FPN: the same heads on a small backbone, for CPUs."""
    return _create_maskrcnn("resnet18", **kwargs)
