"""Normalisation for pooled feature maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PooledBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d that still works when a batch holds one value per channel.

    The image-pooling branch of ASPP (DeepLab v3, §3.3) and the 1×1 bin of the pyramid
    pooling module (PSPNet, §3.3) normalise a 1×1 map. With a batch of one sample, batch
    statistics over a single value are undefined (PyTorch raises "Expected more than 1
    value per channel"), and a batch of two normalises every value to ±1. For that one
    degenerate case this layer normalises with its running statistics instead, exactly as
    evaluation does, and leaves them untouched. With two or more values per channel it is
    an ordinary ``BatchNorm2d``: parameter names, state dict and numerics are identical,
    so torchvision checkpoints load into it unchanged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and x.shape[0] * x.shape[2] * x.shape[3] == 1:
            return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps)
        return super().forward(x)
