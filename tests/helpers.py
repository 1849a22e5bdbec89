"""Helpers shared by tests (imported as ``tests.helpers``)."""

from __future__ import annotations

import torch
from torch import nn


def randomize_norm_stats(module: nn.Module, seed: int = 0) -> nn.Module:
    """Give every BatchNorm non-trivial running stats and affine parameters.

    Freshly built models have mean 0 / var 1 / weight 1 / bias 0 in every norm; an
    equivalence test on those would not notice a norm wired to the wrong tensor.
    """
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in module.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.rand(m.num_features, generator=g) - 0.5)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return module


@torch.no_grad()
def calibrate_norm_stats(module: nn.Module, shape: tuple[int, ...] = (4, 3, 64, 64), seed: int = 0) -> nn.Module:
    """Set every BatchNorm's running statistics to those of real activations.

    A freshly initialised deep network has unit running variance everywhere, so in eval
    mode its activations grow layer after layer (ResNet-101 logits reach ~1e5), and an
    absolute tolerance would measure float32 rounding, not correctness. Running a few
    batches in train mode with cumulative averaging gives the statistics a trained model
    has (activations of order 1); the affine parameters are then randomised so that a
    norm wired to the wrong tensor still shows. Returns the module in eval mode.
    """
    g = torch.Generator().manual_seed(seed)
    norms = [m for m in module.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    module.train()
    for _ in range(2):
        module(torch.randn(*shape, generator=g))
    for m in norms:
        m.momentum = 0.1
        m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
        m.bias.copy_(torch.rand(m.num_features, generator=g) * 0.4 - 0.2)
    return module.eval()


@torch.no_grad()
def scale_logits(model: nn.Module, x: torch.Tensor, target: float = 20.0) -> nn.Module:
    """Scale a torchvision segmentation model's final 1×1 convs so |logits| peak at ``target``.

    Trained models produce logits of order 10; a randomly initialised head on calibrated
    features gives hundreds. An absolute tolerance is only meaningful at a realistic scale.
    """
    model.eval()
    out = model(x)
    for key, head in (("out", model.classifier), ("aux", getattr(model, "aux_classifier", None))):
        if head is None:
            continue
        factor = target / out[key].abs().max().item()
        head[-1].weight.mul_(factor)
        head[-1].bias.mul_(factor)
    return model


def save_tiny_segmenter(folder, class_names: list[str], palette: list[list[int]]):
    """A small DeepLab v3+ MobileNetV2 with realistic norm statistics, saved with its class
    names and palette: the model the serving tests put behind the API and the page."""
    import atrous

    torch.manual_seed(0)
    model = atrous.create_model("deeplabv3plus_mobilenetv2", num_classes=len(class_names))
    calibrate_norm_stats(model, shape=(2, 3, 64, 64))
    model.save_pretrained(folder, metadata={"class_names": class_names, "palette": palette})
    return folder
