"""FCN-32s, FCN-16s and FCN-8s on VGG-16: the skip architecture of Long et al. (2015).

Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation"
(CVPR 2015), arXiv:1411.4038.

* §3.1 — VGG-16's fc6/fc7 become convolutions (7×7 to 4096, 1×1 to 4096) and a 1×1
  "score" layer predicts the classes at stride 32 (:mod:`atrous.backbones.vgg`).
* §4.2, Fig. 3 — FCN-16s adds a 1×1 score layer on pool4, upsamples the stride-32 scores
  2× and sums the two; FCN-8s repeats this with pool3. The 2× upsamplings are learned
  transposed convolutions initialised to bilinear interpolation (§3.3). The final
  upsampling to the input (×32, ×16 or ×8) is a transposed convolution initialised to
  bilinear and frozen by default, so it equals bilinear interpolation;
  ``learn_final_upsampling=True`` trains it too. ``upsample="bilinear"`` or
  ``"nearest"`` replaces every upsampling with fixed interpolation.
* §4.3 — the score layers start at zero ("zero-initialization of the class scoring
  layer"), so FCN-16s/8s begin by predicting exactly what the coarser net predicts.

Alignment. The reference nets pad the input by 100 pixels and crop every score map by a
hand-computed offset. Here convolutions use 'same' padding and pooling uses ``ceil_mode``
(as Caffe's), so cell *j* of a stride-*s* map covers input pixels ``[s·j, s·(j+1))`` for
any input size; each upsampling by *f* yields exactly *f* × its input, aligned, and is
cropped to the next map's size (see :class:`atrous.layers.Upsample`). Outputs are at the
input's height and width for every size, odd ones included.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers import Upsample
from ._registry import register_model
from .pretrained import records_config
from .segmentor import CAFFE_POOLING, Family, Head, SegmentationModel, build_segmentor, check_upsample_mode

# Number of skip connections: FCN-32s none, FCN-16s pool4, FCN-8s pool4 and pool3.
FCN_SKIPS = {32: 0, 16: 1, 8: 2}


class FCNSkipHead(nn.Module):
    """Class scores from fc7 (and pool4, pool3) fused by summation at stride 32/16/8.

    Called with the backbone features ``(pool3, pool4, fc7)`` for FCN-8s, ``(pool4, fc7)``
    for FCN-16s and ``(fc7,)`` for FCN-32s; returns scores at stride 8, 16 or 32.
    """

    def __init__(self, num_classes: int, *, skips: int, upsample: str = "transposed") -> None:
        super().__init__()
        check_upsample_mode(upsample)
        self.skips = skips
        self.score_fr = nn.Conv2d(4096, num_classes, 1)
        if skips >= 1:
            self.score_pool4 = nn.Conv2d(512, num_classes, 1)
            self.upscore2 = Upsample(num_classes, 2, mode=upsample)  # type: ignore[arg-type]
        if skips >= 2:
            self.score_pool3 = nn.Conv2d(256, num_classes, 1)
            self.upscore_pool4 = Upsample(num_classes, 2, mode=upsample)  # type: ignore[arg-type]

    def init_weights(self) -> None:
        """§4.3: score layers start at zero; the upsamplings keep their bilinear start."""
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, *features: torch.Tensor) -> torch.Tensor:
        score = self.score_fr(features[-1])  # stride 32
        if self.skips >= 1:
            pool4 = features[-2]
            score = self.upscore2(score, pool4.shape[-2:]) + self.score_pool4(pool4)  # stride 16
        if self.skips >= 2:
            pool3 = features[-3]
            score = self.upscore_pool4(score, pool3.shape[-2:]) + self.score_pool3(pool3)  # stride 8
        return score


@records_config
def _create_fcn_vgg(stride: int, /, *, learn_final_upsampling: bool = False, **options) -> SegmentationModel:
    output_stride = options.get("output_stride", 32)
    if output_stride != 32:
        raise ValueError(
            f"output_stride: FCN-{stride}s is defined on VGG-16 at output stride 32 (its skips read pool3 "
            f"and pool4), got {output_stride}"
        )
    skips = FCN_SKIPS[stride]

    def head(backbone: nn.Module, *, num_classes: int, upsample: str, **_) -> Head:
        info = backbone.feature_info
        indices = [info.index(module="fc7")]
        if skips >= 1:
            indices.insert(0, info.index(reduction=16))
        if skips >= 2:
            indices.insert(0, info.index(reduction=8))
        return Head(
            FCNSkipHead(num_classes, skips=skips, upsample=upsample),
            inputs=indices,
            logits_stride=stride,
            aligned_upsample=True,
            learnable_upsample=learn_final_upsampling,
            fixed_output_stride="FCN's skip layers are tied to VGG-16's pool3 and pool4 at output stride 32",
        )

    family = Family(head, output_stride=32, upsample="transposed", backbone_args={**CAFFE_POOLING, "fully_conv": True})
    return build_segmentor("vgg16", family, **options)


@register_model
def fcn32s_vgg16(**kwargs) -> SegmentationModel:
    """FCN-32s (Long et al. §4.2): VGG-16, convolutionalised fc6/fc7, scores upsampled ×32."""
    return _create_fcn_vgg(32, **kwargs)


@register_model
def fcn16s_vgg16(**kwargs) -> SegmentationModel:
    """FCN-16s (Long et al. §4.2, Fig. 3): FCN-32s + a pool4 skip fused at stride 16."""
    return _create_fcn_vgg(16, **kwargs)


@register_model
def fcn8s_vgg16(**kwargs) -> SegmentationModel:
    """FCN-8s (Long et al. §4.2, Fig. 3): FCN-16s + a pool3 skip fused at stride 8."""
    return _create_fcn_vgg(8, **kwargs)
