"""Heads more than one family uses: the FCN head, and the auxiliary head built from it."""

from __future__ import annotations

from torch import nn


class FCNHead(nn.Sequential):
    """3×3 conv to in/4 channels → BN → ReLU → dropout 0.1 → 1×1 conv to classes.

    torchvision's ``FCNHead`` (same layout and parameter names): FCN's head, and every
    family's auxiliary head (PSPNet's on stage 3, Zhao et al. 2017, §4.2: 1024 → 256 →
    classes).
    """

    def __init__(self, in_chs: int, num_classes: int, *, dropout: float = 0.1) -> None:
        inter = in_chs // 4
        super().__init__(
            nn.Conv2d(in_chs, inter, 3, padding=1, bias=False),
            nn.BatchNorm2d(inter),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Conv2d(inter, num_classes, 1),
        )


def aux_fcn_head(backbone: nn.Module, num_classes: int, aux: bool = True) -> tuple[FCNHead | None, int]:
    """With ``aux``: an auxiliary FCN head on the backbone's ``aux_module`` feature (ResNet:
    ``layer3``) and the position of that feature; ``(None, -2)`` without."""
    if not aux:
        return None, -2
    index = backbone.feature_info.index(module=backbone.aux_module)
    return FCNHead(backbone.feature_info[index].num_chs, num_classes), index
