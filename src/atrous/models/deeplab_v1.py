"""DeepLab v1 LargeFOV: Chen et al., "Semantic Image Segmentation with Deep Convolutional
Nets and Fully Connected CRFs" (ICLR 2015), arXiv:1412.7062.

§3.1: VGG-16 with the subsampling after pool4 and pool5 skipped (output stride 8) and the
following convolutions dilated — the "hole" algorithm. §4.1, Table 2 "DeepLab-LargeFOV":
fc6 becomes a 3×3 convolution with input stride (rate) 12 and 1024 channels, fc7 1024
channels, giving a 224-pixel receptive field with far fewer parameters than the 4096-channel
7×7 fc6. Scores are upsampled ×8 by bilinear interpolation (§3.1).

Not included: the fully connected CRF post-processing of §4 (a separate, non-differentiable
step), and the ImageNet initialisation of fc6 by subsampling VGG's 7×7×4096 fc6 (fc6/fc7
start from scratch; conv1–conv5 take ImageNet weights through ``pretrained_backbone``).
"""

from __future__ import annotations

from collections import OrderedDict

from torch import nn

from ..layers.conv_norm_act import set_conv_dilation
from ._registry import register_model
from .segmentor import CAFFE_POOLING, Family, Head, SegmentationModel, build_segmentor

# Table 2: kernel 3×3, input stride 12, 1024 channels, at output stride 8.
LARGE_FOV_RATE_OS8 = 12


class LargeFOVHead(nn.Sequential):
    """fc6 (3×3, rate 12, 1024) → ReLU → dropout → fc7 (1×1, 1024) → ReLU → dropout → fc8.

    Dropout 0.5 as in VGG's fully connected layers, which these replace.
    """

    def __init__(self, in_chs: int, num_classes: int, *, output_stride: int = 8, hidden_chs: int = 1024) -> None:
        rate = _rate(output_stride)
        super().__init__(
            OrderedDict(
                fc6=nn.Conv2d(in_chs, hidden_chs, 3, padding=rate, dilation=rate),
                relu6=nn.ReLU(inplace=True),
                drop6=nn.Dropout(0.5),
                fc7=nn.Conv2d(hidden_chs, hidden_chs, 1),
                relu7=nn.ReLU(inplace=True),
                drop7=nn.Dropout(0.5),
                fc8=nn.Conv2d(hidden_chs, num_classes, 1),
            )
        )

    def set_output_stride(self, output_stride: int) -> None:
        set_conv_dilation(self.fc6, _rate(output_stride))


def _rate(output_stride: int) -> int:
    """fc6's rate keeps its field of view in pixels when the output stride changes."""
    return max(1, LARGE_FOV_RATE_OS8 * 8 // output_stride)


def _large_fov_head(backbone: nn.Module, *, num_classes: int, output_stride: int, **_) -> Head:
    head = LargeFOVHead(backbone.feature_info[-1].num_chs, num_classes, output_stride=output_stride)
    return Head(head, aligned_upsample=True)  # ×8 from ceil-mode pooling lands on the input's pixels


LARGE_FOV = Family(_large_fov_head, output_stride=8, backbone_args=CAFFE_POOLING)


@register_model
def deeplabv1_vgg16(**kwargs) -> SegmentationModel:
    """DeepLab v1 LargeFOV (Chen et al. 2015, §3.1 and Table 2): VGG-16 at output stride 8,
    atrous fc6 with rate 12 and 1024 channels, bilinear ×8 upsampling."""
    return build_segmentor("vgg16", LARGE_FOV, **kwargs)
