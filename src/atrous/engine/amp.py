"""``train.amp``: the training step's autocast precision, ``auto`` chosen by measurement.

``auto`` times one forward + backward of a copy of the model on a probe batch of the
run's own shape (its crop at most :data:`PROBE_SIDE` square, its batch at most
:data:`PROBE_PIXELS` pixels: the shape class of the cache key) in fp32 and under bf16 (CPU;
bf16 or fp16 on a GPU) autocast, and keeps the reduced precision only where it is
measurably faster (:func:`atrous.runtime.choose_precision`;
the decision is cached per machine, model and torch version). No label agreement is asked
of a training step: both precisions train the same fp32 weights.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
from torch import nn

from ..runtime import PrecisionChoice, choose_precision, model_signature, precision_dtype

AMP_CHOICES = ("auto", "bf16", "fp16", "off")
PROBE_SIDE = 256
PROBE_PIXELS = 2 * 256 * 256


def validate_amp(amp: str | bool) -> str:
    """``train.amp`` as one of :data:`AMP_CHOICES` (``True``/``False`` mean auto/off)."""
    if isinstance(amp, bool):
        return "auto" if amp else "off"
    if amp not in AMP_CHOICES:
        raise ValueError(f"train.amp must be auto, bf16, fp16 or off, got {amp!r}")
    return amp


def requested_precision(amp: str | bool, device: torch.device) -> PrecisionChoice | None:
    """The precision ``amp`` names, or ``None`` for ``auto`` (which must be measured)."""
    amp = validate_amp(amp)
    if amp == "auto":
        return None
    if amp == "fp16" and device.type != "cuda":
        raise ValueError("train.amp=fp16 needs CUDA; use bf16 or off on CPU")
    return PrecisionChoice("fp32" if amp == "off" else amp, "requested")


def probe_shape(batch: int, height: int, width: int) -> list[int]:
    """The training probe's input shape for a run of this batch and crop: the crop capped
    at :data:`PROBE_SIDE`, the batch at :data:`PROBE_PIXELS` pixels in all (the decision is
    per shape class, and the probe should take seconds, not minutes)."""
    height, width = min(height, PROBE_SIDE), min(width, PROBE_SIDE)
    return [max(1, min(batch, PROBE_PIXELS // (height * width))), 3, height, width]


def choose_training_precision(
    amp: str | bool,
    device: torch.device,
    model: nn.Module,
    loss_on_probe: Callable[[nn.Module], torch.Tensor],
    shape: list[int],
    *,
    use_cache: bool = True,
) -> PrecisionChoice:
    """Resolve ``train.amp`` for ``model`` on ``device``.

    Args:
        loss_on_probe: runs ``model`` (a copy in train mode) on a probe batch of ``shape``
            and returns the loss; it is called under each candidate's autocast.
        shape: the probe's input shape (:func:`probe_shape`), part of the cache key.
    """
    requested = requested_precision(amp, device)
    if requested is not None:
        return requested

    def build(names: list[str]) -> dict[str, Callable[[], torch.Tensor]]:
        probe_model = copy.deepcopy(model).train()  # the run's model and its BN statistics stay untouched
        return {name: _step(probe_model, loss_on_probe, device, precision_dtype(name)) for name in names}

    return choose_precision("train", device, model_signature(model, weights=False), shape, build, use_cache=use_cache)


def _step(
    model: nn.Module, loss_on_probe: Callable[[nn.Module], torch.Tensor], device: torch.device, dtype
) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = loss_on_probe(model)
        loss.backward()
        model.zero_grad(set_to_none=True)
        return loss.detach()

    return run


def semantic_probe(
    shape: list[int], num_classes: int, device: torch.device, *, channels_last: bool
) -> Callable[[nn.Module], torch.Tensor]:
    """Cross-entropy of a segmentation model on a fixed random batch of ``shape``; the
    target takes the logits' size (the unpadded U-Net trains on its smaller valid output)."""
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator).to(device)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def loss(model: nn.Module) -> torch.Tensor:
        output = model(x)
        logits = output["out"] if isinstance(output, dict) else output
        target = torch.randint(0, num_classes, (logits.shape[0], *logits.shape[-2:]), generator=generator)
        return nn.functional.cross_entropy(logits.float(), target.to(device))

    return loss


def instance_probe(shape: list[int], device: torch.device) -> Callable[[nn.Module], torch.Tensor]:
    """Mask R-CNN's summed training losses on a fixed batch of ``shape`` with one object
    (a box and its mask) per image, as torchvision's detection models take targets."""
    generator = torch.Generator().manual_seed(0)
    batch, channels, height, width = shape
    images = [torch.rand(channels, height, width, generator=generator).to(device) for _ in range(batch)]
    y0, x0, y1, x1 = height // 4, width // 4, 3 * height // 4, 3 * width // 4
    mask = torch.zeros(1, height, width, dtype=torch.uint8)
    mask[:, y0:y1, x0:x1] = 1
    target = {
        "boxes": torch.tensor([[x0, y0, x1, y1]], dtype=torch.float32),
        "labels": torch.tensor([1]),
        "masks": mask,
    }
    targets = [{k: v.to(device) for k, v in target.items()} for _ in range(batch)]

    def loss(model: nn.Module) -> torch.Tensor:
        return sum(model(images, targets).values())

    return loss
