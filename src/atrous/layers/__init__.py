"""Small building blocks, one idea per file."""

from .aspp import ASPP, ASPPSum
from .conv_norm_act import ConvNormAct, same_padding, set_conv_dilation
from .image_pooling import GlobalAvgPool, ImagePooling
from .norm import PooledBatchNorm2d
from .padding import mirror_pad
from .pyramid_pooling import PyramidPooling
from .separable import SeparableConvNormAct
from .upsample import ALIGN_CORNERS, Upsample, bilinear_kernel, resize

__all__ = [
    "ALIGN_CORNERS",
    "ASPP",
    "ASPPSum",
    "ConvNormAct",
    "GlobalAvgPool",
    "ImagePooling",
    "PooledBatchNorm2d",
    "PyramidPooling",
    "SeparableConvNormAct",
    "Upsample",
    "bilinear_kernel",
    "mirror_pad",
    "resize",
    "same_padding",
    "set_conv_dilation",
]
