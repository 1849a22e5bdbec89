"""Convolution → normalisation → activation, the unit most heads are built from."""

from __future__ import annotations

from torch import nn


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Padding that keeps H×W for a stride-1 convolution with odd ``kernel_size``."""
    return dilation * (kernel_size - 1) // 2


def set_conv_dilation(conv: nn.Conv2d, dilation: int, stride: int | None = None) -> None:
    """Change a built convolution's dilation (and stride) in place, keeping 'same' padding.

    Weights are untouched: this is what lets a trained model switch output stride
    (DeepLab v3, §3.1: train at output stride 16, evaluate at 8).
    """
    k = conv.kernel_size[0]
    conv.dilation = (dilation, dilation)
    conv.padding = (same_padding(k, dilation), same_padding(k, dilation))
    if stride is not None:
        conv.stride = (stride, stride)


def same_conv(
    in_chs: int, out_chs: int, kernel_size: int, *, stride: int = 1, dilation: int = 1, groups: int = 1
) -> nn.Conv2d:
    """A bias-free ``Conv2d`` (a normalisation follows it) with 'same' padding for any dilation."""
    return nn.Conv2d(
        in_chs,
        out_chs,
        kernel_size,
        stride=stride,
        padding=same_padding(kernel_size, dilation),
        dilation=dilation,
        groups=groups,
        bias=False,
    )


class ConvNormAct(nn.Sequential):
    """``Conv2d(bias=False) → norm → act`` with 'same' padding for any dilation.

    A ``Sequential`` so that its parameters are named ``0.weight``, ``1.weight`` …, the
    layout torchvision's segmentation heads use, and their checkpoints load unchanged.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 1,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
        act_layer: type[nn.Module] | None = nn.ReLU,
    ) -> None:
        layers: list[nn.Module] = [
            same_conv(in_chs, out_chs, kernel_size, stride=stride, dilation=dilation, groups=groups),
            norm_layer(out_chs),
        ]
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)

    @property
    def conv(self) -> nn.Conv2d:
        return self[0]  # type: ignore[return-value]

    def set_dilation(self, dilation: int) -> None:
        set_conv_dilation(self.conv, dilation)
