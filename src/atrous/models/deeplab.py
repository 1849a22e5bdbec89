"""DeepLab v3 and v3+ on dilated ResNets, aligned Xception-65 and MobileNetV2.

* DeepLab v3 — Chen et al., "Rethinking Atrous Convolution for Semantic Image
  Segmentation" (2017), arXiv:1706.05587.
* DeepLab v3+ — Chen et al., "Encoder-Decoder with Atrous Separable Convolution for
  Semantic Image Segmentation" (ECCV 2018), arXiv:1802.02611.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from ..layers import ASPP, ConvNormAct, SeparableConvNormAct, Upsample, resize
from ._registry import register_model
from .pretrained import records_config
from .segmentor import Family, Head, SegmentationModel, build_segmentor, check_upsample_mode

# DeepLab v3 §3.3: "three 3×3 convolutions with rates = (6, 12, 18) when output_stride
# = 16 … the rates are doubled when output_stride = 8".
ASPP_RATES_OS16 = (6, 12, 18)


# DeepLab's MobileNetV2 checkpoints are trained without ASPP's atrous branches (the
# reference model zoo lists "ASPP: N/A" for them): 1×1 and image pooling only, for speed.
MOBILENET_ASPP_RATES: tuple[int, ...] = ()


def aspp_rates(output_stride: int, rates_at_16: Sequence[int] = ASPP_RATES_OS16) -> tuple[int, ...]:
    """ASPP rates for ``output_stride``, scaled from the paper's rates at 16."""
    if not isinstance(rates_at_16, list | tuple) or not all(
        isinstance(r, int) and not isinstance(r, bool) and r >= 1 for r in rates_at_16
    ):
        raise ValueError(f"aspp_rates must be a list of positive integers, got {rates_at_16!r} (e.g. [6, 12, 18])")
    return tuple(max(1, r * 16 // output_stride) for r in rates_at_16)


class DeepLabV3PaperHead(nn.Sequential):
    """DeepLab v3 §3.3 as written: ASPP (1×1, three 3×3 atrous, image pooling; each 256
    channels with BN) → concatenation → 1×1 conv 256 + BN → 1×1 conv to classes.

    Dropout 0.1 after the projection follows the authors' reference code
    (``keep_prob=0.9``). Unlike :class:`DeepLabV3Head` there is no extra 3×3 convolution.
    """

    def __init__(
        self, in_chs: int, num_classes: int, *, output_stride: int = 16, rates: Sequence[int] = ASPP_RATES_OS16
    ) -> None:
        super().__init__(
            ASPP(in_chs, aspp_rates(output_stride, rates), 256, dropout=0.1),
            nn.Conv2d(256, num_classes, 1),
        )
        self.rates_at_16 = tuple(rates)

    def set_output_stride(self, output_stride: int) -> None:
        self[0].set_rates(aspp_rates(output_stride, self.rates_at_16))


class DeepLabV3Head(nn.Sequential):
    """ASPP → 3×3 conv 256 → BN → ReLU → 1×1 conv to classes.

    DeepLab v3 §3.3 ends ASPP with "another 1×1 convolution (also with 256 filters and
    batch normalization) before the final 1×1 convolution which generates the final
    logits". torchvision adds a 3×3 conv + BN + ReLU between the two; this head keeps it,
    and torchvision's layout, so torchvision's checkpoints load and agree to 1e-5.
    """

    def __init__(self, in_chs: int, num_classes: int, *, output_stride: int = 16) -> None:
        super().__init__(
            ASPP(in_chs, aspp_rates(output_stride), 256),
            nn.Conv2d(256, 256, 3, padding=1, bias=False),
            nn.BatchNorm2d(256),
            nn.ReLU(),
            nn.Conv2d(256, num_classes, 1),
        )

    def set_output_stride(self, output_stride: int) -> None:
        self[0].set_rates(aspp_rates(output_stride))


class DeepLabV3PlusHead(nn.Module):
    """DeepLab v3+ decoder (§3.1, Fig. 2 and §4.1).

    The encoder's ASPP output (stride 16) is bilinearly upsampled to the stride-4
    low-level features, which a 1×1 convolution first reduces to 48 channels ("[1×1]
    48 channels" was the best choice in Table 1); the two are concatenated and refined by
    two 3×3 convolutions of 256 channels (Table 2), then a 1×1 convolution gives class
    logits, which the model upsamples ×4 to the input. Upsampling is to the exact size of
    the target map, so odd input sizes work.

    Args:
        separable: depthwise-separable ASPP and decoder convolutions (the paper's
            Xception model); plain convolutions for ResNet.
        dropout: after the ASPP projection (0.1, as the reference implementation).
        rates: ASPP rates at output stride 16.
        upsample: how the encoder output reaches stride 4: ``bilinear`` (the paper),
            ``nearest``, or a learned ``transposed`` convolution initialised to bilinear.
    """

    def __init__(
        self,
        in_chs: int,
        low_level_chs: int,
        num_classes: int,
        *,
        output_stride: int = 16,
        separable: bool = False,
        low_level_out_chs: int = 48,
        decoder_chs: int = 256,
        dropout: float = 0.1,
        rates: Sequence[int] = ASPP_RATES_OS16,
        upsample: str = "bilinear",
    ) -> None:
        super().__init__()
        check_upsample_mode(upsample)
        self.rates_at_16 = tuple(rates)
        self.aspp = ASPP(in_chs, aspp_rates(output_stride, rates), 256, separable=separable, dropout=dropout)
        # The low-level features are at stride 4 (the decoder's premise, §3.1).
        self.up = None if upsample == "bilinear" else Upsample(256, output_stride // 4, mode=upsample)  # type: ignore[arg-type]
        self.low_level = ConvNormAct(low_level_chs, low_level_out_chs, 1)
        conv = SeparableConvNormAct if separable else ConvNormAct
        self.fuse = nn.Sequential(
            conv(256 + low_level_out_chs, decoder_chs, 3),
            conv(decoder_chs, decoder_chs, 3),
        )
        self.classify = nn.Conv2d(decoder_chs, num_classes, 1)

    def set_output_stride(self, output_stride: int) -> None:
        if self.up is not None:
            if self.up.deconv is not None and self.up.factor != output_stride // 4:
                raise ValueError(
                    f"the decoder's learned ×{self.up.factor} upsampling is tied to output stride "
                    f"{4 * self.up.factor}; build the model with output_stride={output_stride}"
                )
            self.up.factor = output_stride // 4
        self.aspp.set_rates(aspp_rates(output_stride, self.rates_at_16))

    def forward(self, low: torch.Tensor, high: torch.Tensor) -> torch.Tensor:
        x = self.aspp(high)  # (B, 256, H/16, W/16)
        low = self.low_level(low)  # (B, 48, H/4, W/4)
        x = resize(x, low.shape[-2:]) if self.up is None else self.up(x, low.shape[-2:])
        x = self.fuse(torch.cat([x, low], dim=1))  # (B, 256, H/4, W/4)
        return self.classify(x)


@records_config
def _create_deeplabv3(
    backbone_name: str, paper_head: bool = False, /, *, aspp_rates: Sequence[int] | None = None, **options
) -> SegmentationModel:
    if aspp_rates is not None and not paper_head:
        raise ValueError("aspp_rates: the torchvision-layout DeepLab v3 head has fixed rates (6, 12, 18) at OS16")
    rates = ASPP_RATES_OS16 if aspp_rates is None else tuple(aspp_rates)

    def head(backbone: nn.Module, *, num_classes: int, output_stride: int, **_) -> Head:
        in_chs = backbone.feature_info[-1].num_chs
        if paper_head:
            return Head(DeepLabV3PaperHead(in_chs, num_classes, output_stride=output_stride, rates=rates))
        return Head(DeepLabV3Head(in_chs, num_classes, output_stride=output_stride))

    return build_segmentor(backbone_name, Family(head), **options)


@records_config
def _create_deeplabv3plus(
    backbone_name: str, /, *, separable: bool = False, aspp_rates: Sequence[int] = ASPP_RATES_OS16, **options
) -> SegmentationModel:
    if not isinstance(separable, bool):
        raise ValueError(f"separable must be true or false, got {separable!r}")

    def head(backbone: nn.Module, *, num_classes: int, output_stride: int, upsample: str) -> Head:
        info = backbone.feature_info
        low_index = info.index(reduction=4)
        decoder = DeepLabV3PlusHead(
            info[-1].num_chs,
            info[low_index].num_chs,
            num_classes,
            output_stride=output_stride,
            separable=separable,
            rates=aspp_rates,
            upsample=upsample,
        )
        return Head(decoder, inputs=(low_index, -1), logits_stride=4)

    return build_segmentor(backbone_name, Family(head), **options)


@register_model
def deeplabv3_resnet18(**kwargs) -> SegmentationModel:
    """DeepLab v3, dilated ResNet-18, torchvision's head layout (a small model for CPUs)."""
    return _create_deeplabv3("resnet18", **kwargs)


@register_model
def deeplabv3_resnet50(**kwargs) -> SegmentationModel:
    """DeepLab v3, dilated ResNet-50: torchvision's ``deeplabv3_resnet50`` preset (its
    checkpoints load; torchvision runs it at output stride 8, ASPP rates 12, 24, 36)."""
    return _create_deeplabv3("resnet50", **kwargs)


@register_model
def deeplabv3_resnet101(**kwargs) -> SegmentationModel:
    """DeepLab v3, dilated ResNet-101: torchvision's ``deeplabv3_resnet101`` preset (its
    checkpoints load; torchvision runs it at output stride 8, ASPP rates 12, 24, 36)."""
    return _create_deeplabv3("resnet101", **kwargs)


def _paper_preset(backbone_name: str, kwargs: dict) -> SegmentationModel:
    kwargs.setdefault("multi_grid", (1, 2, 4))
    return _create_deeplabv3(backbone_name, True, **kwargs)  # True: the paper's head


@register_model
def deeplabv3_paper_resnet50(**kwargs) -> SegmentationModel:
    """DeepLab v3 as the paper specifies it (§3.2, §3.3, §4.1): ResNet-50, Multi_Grid
    (1, 2, 4) in block4, ASPP (6, 12, 18) + image pooling at output stride 16 (rates
    doubled at 8), 1×1 projection straight to the classifier."""
    return _paper_preset("resnet50", kwargs)


@register_model
def deeplabv3_paper_resnet101(**kwargs) -> SegmentationModel:
    """DeepLab v3 as the paper specifies it, on ResNet-101 (the paper's main model)."""
    return _paper_preset("resnet101", kwargs)


@register_model
def deeplabv3_mobilenetv2(**kwargs) -> SegmentationModel:
    """DeepLab v3 on MobileNetV2 (Sandler et al. 2018, §6.3): the paper's head with ASPP
    reduced to its 1×1 and image-pooling branches, as DeepLab's mobile checkpoints."""
    kwargs.setdefault("aspp_rates", MOBILENET_ASPP_RATES)
    return _create_deeplabv3("mobilenetv2", True, **kwargs)  # True: the paper's head


@register_model
def deeplabv3plus_resnet18(**kwargs) -> SegmentationModel:
    """DeepLab v3+, dilated ResNet-18 (a small model for CPUs; the demo's model)."""
    return _create_deeplabv3plus("resnet18", **kwargs)


@register_model
def deeplabv3plus_resnet50(**kwargs) -> SegmentationModel:
    """DeepLab v3+, dilated ResNet-50."""
    return _create_deeplabv3plus("resnet50", **kwargs)


@register_model
def deeplabv3plus_resnet101(**kwargs) -> SegmentationModel:
    """DeepLab v3+, dilated ResNet-101 (the paper's ResNet-101 variant, §4.2)."""
    return _create_deeplabv3plus("resnet101", **kwargs)


@register_model
def deeplabv3plus_xception65(*, act_after_depthwise: bool = False, **kwargs) -> SegmentationModel:
    """DeepLab v3+ on aligned Xception-65 (§3.2) with depthwise-separable ASPP and decoder
    convolutions (§4.3, "Xception as network backbone"): the paper's best model.
    ``act_after_depthwise=True``: ReLU after every depthwise convolution, as §3.2's text
    has it (the default follows the released weights, see :mod:`atrous.backbones.xception`)."""
    kwargs.setdefault("separable", True)
    return _create_deeplabv3plus("xception65", act_after_depthwise=act_after_depthwise, **kwargs)


@register_model
def deeplabv3plus_mobilenetv2(**kwargs) -> SegmentationModel:
    """DeepLab v3+ on MobileNetV2: separable decoder, ASPP without atrous branches (the
    DeepLab reference's mobile configuration)."""
    kwargs.setdefault("separable", True)
    kwargs.setdefault("aspp_rates", MOBILENET_ASPP_RATES)
    return _create_deeplabv3plus("mobilenetv2", **kwargs)
