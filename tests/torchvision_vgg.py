"""A torchvision VGG-16 with random weights, cheap to build, save and load.

``torchvision.models.vgg16(weights=None)`` spends most of its time drawing 120M classifier
weights, and its state dict is 550 MB on disk. Here the model is built on the meta device
and given random weights in which each Linear matrix is a strided window over one short
random vector (row *i* is ``v[i : i + in_features]``): every entry of a row differs and
every row differs, so a flatten order or a transposition error still shows, while
``torch.save`` writes only the short vectors (60 MB in all).
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torchvision


def torchvision_vgg16_state_dict(seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision ``vgg16`` keys and shapes; He-scaled conv weights, small random biases."""
    with torch.device("meta"):
        shapes = {k: v.shape for k, v in torchvision.models.vgg16(weights=None).state_dict().items()}
    g = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in shapes.items():
        if len(shape) == 4:
            state[key] = torch.randn(shape, generator=g) * math.sqrt(2 / math.prod(shape[1:]))
        elif len(shape) == 2:
            rows, cols = shape
            vector = torch.randn(rows + cols, generator=g) * math.sqrt(2 / cols)
            state[key] = vector.as_strided((rows, cols), (1, 1))
        else:
            state[key] = torch.rand(shape, generator=g) * 0.1 - 0.05
    return state


def torchvision_vgg16(state: dict[str, torch.Tensor]) -> torch.nn.Module:
    """torchvision's ``vgg16`` holding ``state``, in eval mode."""
    with torch.device("meta"):
        model = torchvision.models.vgg16(weights=None)
    model.load_state_dict(state, assign=True)
    return model.eval()


def save_state_dict(state: dict[str, torch.Tensor], path: Path) -> str:
    torch.save(state, path)
    return str(path)
