"""Depthwise-separable atrous convolution (DeepLab v3+, §3.1 and §3.2)."""

from __future__ import annotations

from torch import nn

from .conv_norm_act import same_conv, set_conv_dilation


class SeparableConvNormAct(nn.Module):
    """Depthwise 3×3 (dilated) → BN → ReLU → pointwise 1×1 → BN → ReLU.

    DeepLab v3+ §3.2 ("atrous separable convolution") and its modified Xception add batch
    normalisation and ReLU after each depthwise convolution as well as after the pointwise
    one; this is that form. The parameter names (``conv_dw``, ``bn_dw``, ``conv_pw``,
    ``bn_pw``) are timm's, so aligned-Xception weights keep their names.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        *,
        stride: int = 1,
        dilation: int = 1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        act_layer: type[nn.Module] = nn.ReLU,
        act_dw_layer: type[nn.Module] | None = None,
    ) -> None:
        super().__init__()
        self.conv_dw = same_conv(in_chs, in_chs, kernel_size, stride=stride, dilation=dilation, groups=in_chs)
        self.bn_dw = norm_layer(in_chs)
        self.act_dw = (act_dw_layer or act_layer)()  # ``act_dw_layer``: when it differs from the pointwise one
        self.conv_pw = same_conv(in_chs, out_chs, 1)
        self.bn_pw = norm_layer(out_chs)
        self.act_pw = act_layer()

    def set_dilation(self, dilation: int) -> None:
        set_conv_dilation(self.conv_dw, dilation)

    def forward(self, x):
        x = self.act_dw(self.bn_dw(self.conv_dw(x)))
        return self.act_pw(self.bn_pw(self.conv_pw(x)))
