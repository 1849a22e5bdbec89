"""Small building blocks, one idea per file."""

from .adaptive_pool import ExportableAdaptiveAvgPool2d, adaptive_avg_pool2d_export
from .aspp import ASPP, ASPPSum
from .conv_norm_act import ConvNormAct, same_padding, set_conv_dilation
from .image_pooling import GlobalAvgPool, ImagePooling
from .norm import PooledBatchNorm2d
from .padding import crop, mirror_pad
from .pyramid_pooling import PyramidPooling
from .roi_align import RoIAlign, RoIPool, roi_align, roi_pool
from .separable import SeparableConvNormAct
from .tap_conv import TapConv2d, conv2d_taps, use_tap_convs
from .upsample import ALIGN_CORNERS, Upsample, bilinear_kernel, resize

__all__ = [
    "ALIGN_CORNERS",
    "ASPP",
    "ASPPSum",
    "ConvNormAct",
    "ExportableAdaptiveAvgPool2d",
    "GlobalAvgPool",
    "ImagePooling",
    "PooledBatchNorm2d",
    "PyramidPooling",
    "RoIAlign",
    "RoIPool",
    "SeparableConvNormAct",
    "TapConv2d",
    "Upsample",
    "adaptive_avg_pool2d_export",
    "bilinear_kernel",
    "conv2d_taps",
    "crop",
    "mirror_pad",
    "resize",
    "roi_align",
    "roi_pool",
    "same_padding",
    "set_conv_dilation",
    "use_tap_convs",
]
