"""The effective receptive field: where the centre pixel's gradient actually lands.

Luo, Li, Urtasun & Zemel, "Understanding the Effective Receptive Field in Deep
Convolutional Neural Networks" (NeurIPS 2016), §2: the effective receptive field of an
output unit is the input region with a non-negligible impact on it, measured by the
gradient of that unit with respect to the input. They set the gradient of the centre
pixel of a feature map to 1 (all channels) and 0 elsewhere, back-propagate, and average
the absolute input gradient over many random inputs (§4); it is roughly Gaussian, and
much smaller than the theoretical field (§2.2, "the effective receptive field … only
occupies a fraction of the full theoretical receptive field").

:func:`effective_receptive_fields` does that for each backbone stage and for the logits:
for the centre pixel (h//2, w//2) of the map, ``|∂ Σ_channels y[h//2, w//2] / ∂ x|``
summed over the input channels and averaged over ``samples`` standard-normal inputs
(drawn from ``seed``; or given images), in evaluation mode (batch norm uses its running statistics, so the
samples do not interact). It needs values, so it runs on the CPU, at a modest size.

Each map is summarised by the radius around the field's centre that holds 50 % and 90 %
of the gradient mass. The radius is a half-side: the smallest centred square of side
2·radius + 1 holding that share (Chebyshev distance), the same shape as the theoretical
field, whose half-size ``(size − 1)/2`` it is compared with.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from .tracer import FieldWalk, Spatial, in_chans_of

MASS_SHARES = (0.5, 0.9)


@dataclass(frozen=True)
class EffectiveField:
    """The effective receptive field of one feature map's centre pixel."""

    name: str  # module path of the map ("" for the logits)
    label: str
    weights: str  # "random" or "trained"
    gradient: np.ndarray  # (H, W): mean |gradient| per input pixel, channels summed
    pixel: tuple[int, int]  # the probed output pixel
    centre: tuple[int, int]  # the input pixel its theoretical field is centred on
    radius50: int
    radius90: int
    half_size: tuple[float, float]  # the theoretical field's (size − 1)/2, per axis
    samples: int

    def as_dict(self) -> dict:
        return {
            "name": self.name,
            "label": self.label,
            "weights": self.weights,
            "input_size": list(self.gradient.shape),
            "pixel": list(self.pixel),
            "centre": list(self.centre),
            "radius50": self.radius50,
            "radius90": self.radius90,
            "theoretical_half_size": [h if np.isfinite(h) else None for h in self.half_size],
            "samples": self.samples,
        }


def mass_radius(gradient: np.ndarray, centre: Sequence[int], share: float) -> int:
    """The smallest ``d`` such that the square of half-side ``d`` around ``centre`` holds
    ``share`` of ``gradient``'s total (Chebyshev distance)."""
    total = float(gradient.sum())
    if total <= 0:
        return 0
    ys, xs = np.indices(gradient.shape)
    distance = np.maximum(np.abs(ys - centre[0]), np.abs(xs - centre[1]))
    per_ring = np.bincount(distance.ravel(), weights=gradient.ravel().astype(np.float64))
    inside = np.cumsum(per_ring) / total
    return int(np.searchsorted(inside, share - 1e-12))


def effective_receptive_fields(
    model: nn.Module,
    size: Sequence[int] = (129, 129),
    *,
    samples: int = 4,
    inputs: torch.Tensor | None = None,
    weights: str = "random",
    seed: int = 0,
) -> list[EffectiveField]:
    """One :class:`EffectiveField` per backbone stage (``feature_info``) and for the logits.

    ``model`` must hold real weights (CPU); ``inputs`` (N, C, H, W) replaces the
    ``samples`` random inputs of ``size``. The model is left in the mode it was in.
    """
    if inputs is None:
        if samples < 1:
            raise ValueError(f"samples must be >= 1, got {samples}")
        generator = torch.Generator().manual_seed(seed)
        inputs = torch.randn(samples, in_chans_of(model), int(size[0]), int(size[1]), generator=generator)
    device = next(model.parameters()).device
    x = inputs.detach().to(device).float().requires_grad_(True)
    features: list[torch.Tensor] = []
    backbone = getattr(model, "backbone", None)
    hook = backbone.register_forward_hook(lambda _m, _a, out: features.extend(out)) if backbone is not None else None
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), FieldWalk(model) as walk:
            out = model(walk.input(x))
        trace = walk.trace(out)
    finally:
        if hook is not None:
            hook.remove()
        model.train(was_training)
    targets: list[tuple[str, str, torch.Tensor, Spatial | None]] = []
    info = getattr(backbone, "feature_info", None) or []
    call = trace.modules.get("backbone")
    for spec, tensor, note in zip(info, features, call.outputs if call else [], strict=False):
        targets.append((f"backbone.{spec.module}", f"{spec.module} (reduction {spec.reduction})", tensor, note.fields))
    targets.append(("", "logits", out, trace.outputs[0].fields if trace.outputs else None))
    results = []
    for name, label, tensor, fields in targets:
        h, w = tensor.shape[-2:]
        pixel = (h // 2, w // 2)
        (grad,) = torch.autograd.grad(tensor[:, :, pixel[0], pixel[1]].sum(), x, retain_graph=True)
        gradient = grad.abs().sum(dim=1).mean(dim=0).cpu().numpy()
        if fields is not None:
            centre = tuple(
                int(np.clip(round(f.centre(p)), 0, n - 1))
                for f, p, n in zip((fields.h, fields.w), pixel, gradient.shape, strict=True)
            )
            half = ((fields.h.size - 1) / 2, (fields.w.size - 1) / 2)
        else:
            centre, half = (gradient.shape[0] // 2, gradient.shape[1] // 2), (float("nan"), float("nan"))
        r50, r90 = (mass_radius(gradient, centre, share) for share in MASS_SHARES)
        results.append(EffectiveField(name, label, weights, gradient, pixel, centre, r50, r90, half, len(x)))
    return results
