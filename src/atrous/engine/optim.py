"""Optimiser and learning-rate schedule as DeepLab trains.

* Parameter groups: backbone vs head (the head's learning rate × ``head_lr_mult``, the
  "10× for the new layers" of FCN/DeepLab fine-tuning), and no weight decay on norms and
  biases (1-D parameters), as is standard since Goyal et al. 2017.
* SGD with momentum 0.9 (DeepLab v3 §4.1) or AdamW, with PyTorch's fused step where
  every parameter allows it (see :func:`fused_supported`).
* "Poly" decay (DeepLab v2 §4.1, v3 §4.1): lr = base · (1 − step/steps)^0.9, after an
  optional linear warm-up from ``warmup_ratio · base``.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def param_groups(model: nn.Module, *, lr: float, weight_decay: float, head_lr_mult: float = 1.0) -> list[dict]:
    """Four groups: {backbone, head} × {decayed weights, norms and biases}."""
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        is_backbone = name.startswith("backbone.") or name.startswith("module.backbone.")
        no_decay = param.ndim <= 1
        groups.setdefault((is_backbone, no_decay), []).append(param)
    result = []
    for (is_backbone, no_decay), params in sorted(groups.items()):
        mult = 1.0 if is_backbone else head_lr_mult
        result.append(
            {
                "params": params,
                "lr": lr * mult,
                "lr_mult": mult,
                "weight_decay": 0.0 if no_decay else weight_decay,
                "name": f"{'backbone' if is_backbone else 'head'}{'_no_decay' if no_decay else ''}",
            }
        )
    return result


def build_optimizer(
    model: nn.Module,
    name: str,
    *,
    lr: float,
    weight_decay: float,
    momentum: float = 0.9,
    head_lr_mult: float = 1.0,
) -> torch.optim.Optimizer:
    groups = param_groups(model, lr=lr, weight_decay=weight_decay, head_lr_mult=head_lr_mult)
    fused = {"fused": True} if fused_supported(model) else {}
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum, **fused)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr, **fused)
    raise ValueError(f"train.optimizer must be 'sgd' or 'adamw', got {name!r}")


def fused_supported(model: nn.Module) -> bool:
    """Whether the fused (single-kernel) optimiser step can update every parameter:
    floating-point parameters on the CPU or CUDA. It computes what the per-parameter loop
    computes, in one pass over memory."""
    params = [p for p in model.parameters() if p.requires_grad]
    return bool(params) and all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params)


def poly_lambda(steps: int, *, power: float = 0.9, warmup_steps: int = 0, warmup_ratio: float = 0.1):
    """The multiplier of the base learning rate at each step (a picklable callable)."""
    return _Poly(steps, power, warmup_steps, warmup_ratio)


class _Poly:
    def __init__(self, steps: int, power: float, warmup_steps: int, warmup_ratio: float) -> None:
        # The same ranges as atrous.config.CHECKS, for schedules built without a Config: a
        # power <= 0 would divide by zero at the last step, after all the training.
        if steps < 1:
            raise ValueError(f"train.steps must be >= 1, got {steps}")
        if not power > 0 or not math.isfinite(power):
            raise ValueError(f"train.poly_power must be > 0, got {power}")
        if warmup_steps < 0:
            raise ValueError(f"train.warmup_steps must be >= 0, got {warmup_steps}")
        if not 0 <= warmup_ratio < 1:
            raise ValueError(f"train.warmup_ratio must be in [0, 1), got {warmup_ratio}")
        self.steps, self.power, self.warmup_steps, self.warmup_ratio = steps, power, warmup_steps, warmup_ratio

    def __call__(self, step: int) -> float:
        factor = max(0.0, 1.0 - step / self.steps) ** self.power
        if step < self.warmup_steps:
            alpha = step / self.warmup_steps
            factor *= self.warmup_ratio + (1.0 - self.warmup_ratio) * alpha
        return factor


def build_scheduler(
    optimizer: torch.optim.Optimizer,
    steps: int,
    *,
    power: float = 0.9,
    warmup_steps: int = 0,
    warmup_ratio: float = 0.1,
) -> torch.optim.lr_scheduler.LambdaLR:
    fn = poly_lambda(steps, power=power, warmup_steps=warmup_steps, warmup_ratio=warmup_ratio)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda=[fn] * len(optimizer.param_groups))
