"""Atrous Spatial Pyramid Pooling in its two published forms.

* :class:`ASPP` — DeepLab v3 (§3.3): a 1×1 branch, three 3×3 atrous branches and image
  pooling, concatenated and projected by a 1×1 convolution. With ``separable=True`` the
  atrous branches are depthwise-separable, as in DeepLab v3+ (§3.1).
* :class:`ASPPSum` — DeepLab v2 (§3.3, Fig. 4): parallel atrous branches that each
  predict class scores, fused by summation.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .conv_norm_act import ConvNormAct, set_conv_dilation
from .image_pooling import ImagePooling
from .separable import SeparableConvNormAct


class ASPP(nn.Module):
    """DeepLab v3 ASPP: 1×1 + three 3×3 atrous + image pooling → concat → 1×1 → dropout.

    Args:
        in_chs: channels of the backbone feature map.
        rates: dilation of each 3×3 branch *at the current output stride*; DeepLab v3
            uses (6, 12, 18) at output stride 16 and twice that at 8 (§3.3).
        out_chs: channels of every branch and of the projection (256 in the paper).
        separable: depthwise-separable 3×3 branches (DeepLab v3+).
        dropout: dropout after the projection (torchvision uses 0.5; the DeepLab v3+
            reference code uses 0.1).

    The attribute names (``convs``, ``project``) and ordering match torchvision's
    ``ASPP`` so its checkpoints load unchanged.
    """

    def __init__(
        self,
        in_chs: int,
        rates: Sequence[int] = (6, 12, 18),
        out_chs: int = 256,
        *,
        separable: bool = False,
        dropout: float = 0.5,
        norm_layer: type[nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = [ConvNormAct(in_chs, out_chs, 1, norm_layer=norm_layer)]
        for rate in rates:
            if separable:
                branches.append(SeparableConvNormAct(in_chs, out_chs, 3, dilation=rate, norm_layer=norm_layer))
            else:
                branches.append(ConvNormAct(in_chs, out_chs, 3, dilation=rate, norm_layer=norm_layer))
        branches.append(ImagePooling(in_chs, out_chs))
        self.convs = nn.ModuleList(branches)
        self.project = nn.Sequential(
            *ConvNormAct(len(branches) * out_chs, out_chs, 1, norm_layer=norm_layer),
            nn.Dropout(dropout),
        )
        self.rates = tuple(int(r) for r in rates)

    def set_rates(self, rates: Sequence[int]) -> None:
        """Change the atrous rates of a built ASPP in place (weights untouched)."""
        if len(rates) != len(self.rates):
            raise ValueError(f"ASPP has {len(self.rates)} atrous branches; got {len(rates)} rates {tuple(rates)}")
        for branch, rate in zip(self.convs[1:-1], rates, strict=True):
            branch.set_dilation(int(rate))  # type: ignore[operator]
        self.rates = tuple(int(r) for r in rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([branch(x) for branch in self.convs], dim=1)  # (B, 5·out_chs, h, w)
        return self.project(x)


class ASPPSum(nn.Module):
    """DeepLab v2 ASPP: parallel atrous branches straight to class scores, summed.

    With ``hidden_chs=None`` each branch is one 3×3 atrous convolution to
    ``num_classes`` (the ResNet-101 DeepLab v2 model). With ``hidden_chs`` set, each
    branch is the VGG-16 form of Fig. 4: 3×3 atrous conv (fc6) → ReLU → dropout → 1×1
    (fc7) → ReLU → dropout → 1×1 (fc8) to classes. ASPP-L uses rates (6, 12, 18, 24).
    """

    def __init__(
        self,
        in_chs: int,
        num_classes: int,
        rates: Sequence[int] = (6, 12, 18, 24),
        *,
        hidden_chs: int | None = None,
        dropout: float = 0.5,
    ) -> None:
        super().__init__()
        branches: list[nn.Module] = []
        for rate in rates:
            if hidden_chs is None:
                conv = nn.Conv2d(in_chs, num_classes, 3, padding=rate, dilation=rate)
                branches.append(conv)
            else:
                branches.append(
                    nn.Sequential(
                        nn.Conv2d(in_chs, hidden_chs, 3, padding=rate, dilation=rate),
                        nn.ReLU(),
                        nn.Dropout(dropout),
                        nn.Conv2d(hidden_chs, hidden_chs, 1),
                        nn.ReLU(),
                        nn.Dropout(dropout),
                        nn.Conv2d(hidden_chs, num_classes, 1),
                    )
                )
        self.branches = nn.ModuleList(branches)
        self.rates = tuple(int(r) for r in rates)

    def set_rates(self, rates: Sequence[int]) -> None:
        if len(rates) != len(self.rates):
            raise ValueError(f"ASPPSum has {len(self.rates)} branches; got {len(rates)} rates {tuple(rates)}")
        for branch, rate in zip(self.branches, rates, strict=True):
            first = branch if isinstance(branch, nn.Conv2d) else branch[0]
            set_conv_dilation(first, int(rate))  # type: ignore[arg-type]
        self.rates = tuple(int(r) for r in rates)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.branches[0](x)
        for branch in self.branches[1:]:
            out = out + branch(x)
        return out
