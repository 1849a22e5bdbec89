"""DeepLab v2: Chen et al., "DeepLab: Semantic Image Segmentation with Deep Convolutional
Nets, Atrous Convolution, and Fully Connected CRFs" (TPAMI 2017), arXiv:1606.00915.

§3.1: the backbone runs at output stride 8 with atrous convolution. §3.3 and Fig. 4:
atrous spatial pyramid pooling (ASPP) — parallel 3×3 atrous branches on the last feature
map, each producing class scores, fused by summation. ASPP-L uses rates (6, 12, 18, 24),
ASPP-S (2, 4, 8, 12) (§4.1, Table 3). On VGG-16 each branch is fc6 (3×3 atrous, 1024)
→ fc7 (1×1, 1024) → fc8 (1×1, classes); on ResNet-101 each branch is a single 3×3 atrous
convolution to the classes (§4.1, "DeepLab-ASPP … ResNet-101"). Scores are upsampled ×8
bilinearly. The fully connected CRF of §3.4 is not included.

Rates are defined at output stride 8; :meth:`DeepLabV2Head.set_output_stride` scales them
so each branch keeps its field of view in pixels.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import nn

from ..layers import ASPPSum
from ._registry import register_model
from .pretrained import records_config
from .segmentor import CAFFE_POOLING, Family, Head, SegmentationModel, build_segmentor

ASPP_RATES_OS8 = {"L": (6, 12, 18, 24), "S": (2, 4, 8, 12)}


def aspp_v2_rates(aspp: str) -> tuple[int, ...]:
    if aspp not in ASPP_RATES_OS8:
        raise ValueError(f"aspp must be 'L' (rates 6, 12, 18, 24) or 'S' (rates 2, 4, 8, 12), got {aspp!r}")
    return ASPP_RATES_OS8[aspp]


class DeepLabV2Head(ASPPSum):
    """:class:`~atrous.layers.ASPPSum` with rates given at output stride 8."""

    def __init__(
        self, in_chs: int, num_classes: int, *, rates: Sequence[int], output_stride: int, hidden_chs: int | None
    ) -> None:
        super().__init__(in_chs, num_classes, _scaled(rates, output_stride), hidden_chs=hidden_chs)
        self.rates_at_8 = tuple(rates)

    def set_output_stride(self, output_stride: int) -> None:
        self.set_rates(_scaled(self.rates_at_8, output_stride))

    def init_weights(self) -> None:
        # The reference nets draw the class-score layers from N(0, 0.01²) with zero bias
        # (summing four Kaiming-scaled branches starts with huge logits).
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                if m.out_channels == self.num_classes:
                    nn.init.normal_(m.weight, std=0.01)
                else:
                    nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    @property
    def num_classes(self) -> int:
        last = self.branches[0] if isinstance(self.branches[0], nn.Conv2d) else self.branches[0][-1]
        return last.out_channels


def _scaled(rates_at_8: Sequence[int], output_stride: int) -> tuple[int, ...]:
    return tuple(max(1, r * 8 // output_stride) for r in rates_at_8)


@records_config
def _create_deeplabv2(backbone_name: str, /, *, aspp: str = "L", **options) -> SegmentationModel:
    rates = aspp_v2_rates(aspp)
    vgg = backbone_name == "vgg16"

    def head(backbone: nn.Module, *, num_classes: int, output_stride: int, **_) -> Head:
        in_chs = backbone.feature_info[-1].num_chs
        module = DeepLabV2Head(
            in_chs, num_classes, rates=rates, output_stride=output_stride, hidden_chs=1024 if vgg else None
        )
        # VGG's ceil-mode pooling makes an aligned ×8 upsampling-and-crop exact; ResNet's
        # logits are resized to the input size as torchvision does.
        return Head(module, aligned_upsample=vgg)

    family = Family(head, output_stride=8, backbone_args=CAFFE_POOLING if vgg else {})
    return build_segmentor(backbone_name, family, **options)


@register_model
def deeplabv2_resnet101(**kwargs) -> SegmentationModel:
    """DeepLab v2 (§3.3, §4.1): ResNet-101 at output stride 8, ASPP-L (rates 6, 12, 18, 24)
    of single 3×3 atrous class-score branches, summed; ``aspp="S"`` for ASPP-S (2, 4, 8, 12)."""
    return _create_deeplabv2("resnet101", **kwargs)


@register_model
def deeplabv2_vgg16(**kwargs) -> SegmentationModel:
    """DeepLab v2 (§3.3, Fig. 4): VGG-16 at output stride 8, ASPP-L branches fc6 (3×3
    atrous, 1024) → fc7 (1×1, 1024) → fc8, summed; ``aspp="S"`` for ASPP-S."""
    return _create_deeplabv2("vgg16", **kwargs)
