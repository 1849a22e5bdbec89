"""PSPNet: Zhao et al., "Pyramid Scene Parsing Network" (CVPR 2017), arXiv:1612.01105."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..layers import ConvNormAct, PyramidPooling
from ._registry import register_model
from .fcn import aux_fcn_head
from .segmentor import SegmentationModel, build_backbone, final_upsample

# §4.2: "we set the auxiliary loss weight α to 0.4"; Table 3 shows it best.
PSP_AUX_WEIGHT = 0.4


class PSPHead(nn.Sequential):
    """Pyramid pooling (bins 1, 2, 3, 6) → 3×3 conv 512 → BN → ReLU → dropout 0.1 → 1×1.

    §3.3 and Fig. 3: the pyramid-pooled features, concatenated with the input feature
    map, are "fed into a convolution layer to get the final per-pixel prediction"; the
    authors' released model uses a 3×3 conv to 512 channels, dropout 0.1 and a 1×1
    classifier, which is the form here.
    """

    def __init__(self, in_chs: int, num_classes: int, *, bins: Sequence[int] = (1, 2, 3, 6)) -> None:
        ppm = PyramidPooling(in_chs, bins)
        super().__init__(
            ppm,
            ConvNormAct(ppm.out_chs, 512, 3),
            nn.Dropout(0.1),
            nn.Conv2d(512, num_classes, 1),
        )


def _create_pspnet(
    backbone_name: str,
    *,
    num_classes: int = 21,
    output_stride: int = 8,
    aux: bool = True,
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
    head = PSPHead(backbone.feature_info[-1].num_chs, num_classes)
    aux_head, aux_index = aux_fcn_head(backbone, num_classes, aux)
    return SegmentationModel(
        backbone,
        head,
        aux_classifier=aux_head,
        aux_index=aux_index,
        aux_weight=PSP_AUX_WEIGHT,
        upsample=final_upsample(upsample, num_classes, output_stride),
        config=config,
    )


@register_model
def pspnet_resnet50(**kwargs) -> SegmentationModel:
    """PSPNet, dilated ResNet-50 at output stride 8, auxiliary head on stage 3 (§4.2)."""
    return _create_pspnet("resnet50", **kwargs)


@register_model
def pspnet_resnet101(**kwargs) -> SegmentationModel:
    """PSPNet, dilated ResNet-101 at output stride 8, auxiliary head on stage 3 (§4.2)."""
    return _create_pspnet("resnet101", **kwargs)
