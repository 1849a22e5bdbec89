"""FCN on a dilated ResNet, as torchvision builds it, and the FCN head other models reuse.

Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation"
(CVPR 2015). ``fcn_resnet50/101`` are torchvision's variant: a ResNet at output stride 8
(dilated, DeepLab-style) with a 3×3 + 1×1 head and one bilinear upsampling, not the
VGG-16 FCN-32s/16s/8s skip architecture of the paper's §4.2.
"""

from __future__ import annotations

from torch import nn

from ._registry import register_model
from .segmentor import SegmentationModel, build_backbone, final_upsample


class FCNHead(nn.Sequential):
    """3×3 conv to in/4 channels → BN → ReLU → dropout 0.1 → 1×1 conv to classes.

    torchvision's ``FCNHead`` (same layout and parameter names); also PSPNet's
    auxiliary head on stage 3 (Zhao et al. 2017, §4.2: 1024 → 256 → classes).
    """

    def __init__(self, in_chs: int, num_classes: int, *, dropout: float = 0.1) -> None:
        inter = in_chs // 4
        super().__init__(
            nn.Conv2d(in_chs, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv2d(inter, num_classes, 1),
        )


def aux_fcn_head(backbone, num_classes: int, aux: bool = True) -> tuple[FCNHead | None, int]:
    """With ``aux``: an auxiliary FCN head on the backbone's ``aux_module`` feature (ResNet:
    ``layer3``) and the position of that feature; ``(None, -2)`` without."""
    if not aux:
        return None, -2
    index = backbone.feature_info.index(module=backbone.aux_module)
    return FCNHead(backbone.feature_info[index].num_chs, num_classes), index


def _create_fcn(
    backbone_name: str,
    *,
    num_classes: int = 21,
    output_stride: int = 8,
    aux: bool = False,
    upsample: str = "bilinear",
    **common,
) -> SegmentationModel:
    backbone, config = build_backbone(
        backbone_name,
        num_classes=num_classes,
        output_stride=output_stride,
        aux=aux,
        upsample=upsample,
        **common,
    )
    head = FCNHead(backbone.feature_info[-1].num_chs, num_classes)
    aux_head, aux_index = aux_fcn_head(backbone, num_classes, aux)
    return SegmentationModel(
        backbone,
        head,
        aux_classifier=aux_head,
        aux_index=aux_index,
        upsample=final_upsample(upsample, num_classes, output_stride),
        config=config,
    )


@register_model
def fcn_resnet50(**kwargs) -> SegmentationModel:
    """FCN, dilated ResNet-50, output stride 8 (torchvision ``fcn_resnet50`` layout)."""
    return _create_fcn("resnet50", **kwargs)


@register_model
def fcn_resnet101(**kwargs) -> SegmentationModel:
    """FCN, dilated ResNet-101, output stride 8 (torchvision ``fcn_resnet101`` layout)."""
    return _create_fcn("resnet101", **kwargs)
