"""FCN on a dilated ResNet, as torchvision builds it.

Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation"
(CVPR 2015). ``fcn_resnet50/101`` are torchvision's variant: a ResNet at output stride 8
(dilated, DeepLab-style) with a 3×3 + 1×1 head (:class:`~atrous.models.heads.FCNHead`)
and one bilinear upsampling, not the VGG-16 FCN-32s/16s/8s skip architecture of the
paper's §4.2 (:mod:`atrous.models.fcn_vgg`).
"""

from __future__ import annotations

from torch import nn

from ._registry import register_model
from .heads import FCNHead
from .segmentor import Family, Head, SegmentationModel, build_segmentor


def _fcn_head(backbone: nn.Module, *, num_classes: int, **_) -> Head:
    return Head(FCNHead(backbone.feature_info[-1].num_chs, num_classes))


FCN = Family(_fcn_head, output_stride=8)


@register_model
def fcn_resnet50(**kwargs) -> SegmentationModel:
    """FCN, dilated ResNet-50, output stride 8 (torchvision ``fcn_resnet50`` layout)."""
    return build_segmentor("resnet50", FCN, **kwargs)


@register_model
def fcn_resnet101(**kwargs) -> SegmentationModel:
    """FCN, dilated ResNet-101, output stride 8 (torchvision ``fcn_resnet101`` layout)."""
    return build_segmentor("resnet101", FCN, **kwargs)
