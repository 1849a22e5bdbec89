"""An exponential moving average of a model's weights (``train.ema``).

Polyak–Ruppert averaging in the exponential form TensorFlow's ``ExponentialMovingAverage``
and timm's ``ModelEmaV2``/``ModelEmaV3`` keep: after optimiser step ``n``

    avg ← d·avg + (1 − d)·w,    d = min(decay, (1 + n) / (10 + n))

The ramp on ``d`` is TensorFlow's ``num_updates`` rule: without it the average would remember
the random initialisation for about 1 / (1 − decay) steps, longer than a short run lasts.
Floating-point buffers (BatchNorm's running mean and variance) are averaged the same way, as
timm does by default; integer buffers (``num_batches_tracked``) are copied.

The run evaluates the average, keeps it as ``best/``, and stores it in ``last.pt`` under
:data:`EMA_KEY` beside the raw weights it trains on; since ``d`` depends only on the step, a
resumed run continues the average exactly.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..utils.state_dict import EMA_KEY

__all__ = ["EMA_KEY", "WeightAverage", "ema_decay"]

# TensorFlow's ExponentialMovingAverage(num_updates=n): d = min(decay, (1 + n) / (10 + n)).
_RAMP_OFFSET = 10


def ema_decay(decay: float, step: int) -> float:
    """The decay used for the update after optimiser step ``step`` (counted from 1)."""
    return min(decay, (1 + step) / (_RAMP_OFFSET + step))


class WeightAverage:
    """The averaged copy of ``model`` (in evaluation mode, without gradients).

    Args:
        model: the model being trained; copied as the average's starting point.
        decay: the long-run decay, in (0, 1); the average spans about 1 / (1 − decay) steps.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        if not 0 < decay < 1:
            raise ValueError(f"the weight average's decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Fold ``model``'s weights after optimiser step ``step`` into the average."""
        current = model.state_dict()
        averaged, latest = [], []
        for name, avg in self.module.state_dict().items():
            weight = current[name].detach()
            if avg.is_floating_point():
                averaged.append(avg)
                latest.append(weight.to(avg.dtype))
            else:
                avg.copy_(weight)
        if averaged:
            # One fused kernel per dtype and device instead of a loop of small ones (timm does the same).
            torch._foreach_lerp_(averaged, latest, 1.0 - ema_decay(self.decay, step))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.module.state_dict()
