"""PSPNet: Zhao et al., "Pyramid Scene Parsing Network" (CVPR 2017), arXiv:1612.01105."""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..layers import ConvNormAct, PyramidPooling
from ._registry import register_model
from .segmentor import Family, Head, SegmentationModel, build_segmentor


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


def _psp_head(backbone: nn.Module, *, num_classes: int, **_) -> Head:
    return Head(PSPHead(backbone.feature_info[-1].num_chs, num_classes))


# §4.2: output stride 8, and an auxiliary FCN head on stage 3 weighted α = 0.4
# (SegmentationModel's AUX_WEIGHT).
PSPNET = Family(_psp_head, output_stride=8, aux=True)


@register_model
def pspnet_resnet50(**kwargs) -> SegmentationModel:
    """PSPNet, dilated ResNet-50 at output stride 8, auxiliary head on stage 3 (§4.2)."""
    return build_segmentor("resnet50", PSPNET, **kwargs)


@register_model
def pspnet_resnet101(**kwargs) -> SegmentationModel:
    """PSPNet, dilated ResNet-101 at output stride 8, auxiliary head on stage 3 (§4.2)."""
    return build_segmentor("resnet101", PSPNET, **kwargs)
