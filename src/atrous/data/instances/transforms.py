"""Training augmentation for instance samples: flips and rescaling that move image, masks and boxes together.

The paired transforms of :mod:`atrous.data.transforms` take one class-index mask; an
instance sample has ``N`` masks, a box per mask and per-instance fields (labels, areas,
crowd flags) that must stay aligned when instances vanish. Flips move boxes by formula,
exact under the exclusive-edge convention (``x1' = W − x2``, see
:mod:`atrous.data.instances.target`); rescaling resizes the image bilinearly (antialiased)
and the masks by nearest neighbour with aligned pixel centres (as
:func:`atrous.data.datasets.base.resize_nearest`), then recomputes boxes and areas from the
masks and drops instances whose mask vanished.

Colour jitter (``jitter`` > 0) comes last and touches the image only: brightness, contrast and
saturation each by a factor drawn uniformly from [1 − jitter, 1 + jitter], applied in a random
order — what torchvision's ``ColorJitter`` does, and what semantic training applies — but drawn
from the same generator as the geometry, so a keyed sample is jittered the same way every time.

Randomness: each call draws three uniforms in one go (scale, horizontal flip, vertical
flip), whether or not each step is on, then — only with jitter — three factors and an order,
from the first of: the ``generator`` passed to the
call; the transform's own generator when it was built with ``seed``; torch's global
generator. The trainer's :class:`~atrous.engine.sampling.KeyedAugmentation` seeds the
global generator by ``(seed, epoch · N + index)`` around each call, so leave ``seed`` unset
there; ``seed`` gives one reproducible stream in a single process (every DataLoader worker
would start it afresh, repeating the same draws).
"""

from __future__ import annotations

import torch
from torchvision.transforms.v2 import functional as F

from ..transforms import jitter_strength
from .target import Target, mask_areas, masks_to_boxes

_PER_INSTANCE = ("labels", "area", "iscrowd")  # besides masks and boxes, which are recomputed


def _resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Nearest-neighbour resize of ``(N, H, W)`` with aligned pixel centres (PyTorch's ``nearest-exact``)."""
    (h_in, w_in), (h_out, w_out) = masks.shape[-2:], size
    rows = ((torch.arange(h_out, dtype=torch.float64) + 0.5) * h_in / h_out).long().clamp_(max=h_in - 1)
    cols = ((torch.arange(w_out, dtype=torch.float64) + 0.5) * w_in / w_out).long().clamp_(max=w_in - 1)
    return masks[:, rows][:, :, cols]


def _flip(image: torch.Tensor, target: Target, axis: int) -> torch.Tensor:
    """``image`` mirrored along ``axis`` (-1 left–right, -2 top–bottom); ``target``'s masks and
    boxes are mirrored with it, in place. Exact with exclusive box edges: ``x1' = W − x2``."""
    size = image.shape[axis]
    if "masks" in target:
        target["masks"] = target["masks"].flip(axis)
    if "boxes" in target:
        x1, y1, x2, y2 = target["boxes"].unbind(-1)
        if axis == -1:
            x1, x2 = size - x2, size - x1
        else:
            y1, y2 = size - y2, size - y1
        target["boxes"] = torch.stack([x1, y1, x2, y2], dim=-1)
    return image.flip(axis)


_ADJUSTMENTS = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation)


def _colour_jitter(image: torch.Tensor, strength: float, generator: torch.Generator | None) -> torch.Tensor:
    """``image`` (float, 0..1) with brightness, contrast and saturation each scaled by a factor
    from [1 − strength, 1 + strength], in a random order (torchvision's ``ColorJitter``)."""
    factors = 1.0 - strength + 2.0 * strength * torch.rand(3, generator=generator, dtype=torch.float64)
    for i in torch.randperm(3, generator=generator).tolist():
        image = _ADJUSTMENTS[i](image, float(factors[i]))
    return image


class InstanceTrainTransforms:
    """Random rescale, then horizontal and vertical flips, of ``(image, target)``.

    Args:
        hflip: probability of a left-right flip.
        vflip: probability of an up-down flip (for data without an up, such as nuclei).
        scale_range: ``(low, high)``: resize by a factor drawn uniformly from it (aspect
            ratio kept); ``None`` to keep the size.
        jitter: as ``data.jitter``: ``True`` (±0.2), ``False``, or a strength in [0, 1].
        seed: seed of the transform's own generator; ``None`` draws from torch's global
            one (see the module docstring).

    Call with ``image float32 (3, H, W)`` and a target of :mod:`~atrous.data.instances.target`'s
    form (``masks`` required when rescaling); returns new tensors and a new dict (the inputs are
    not modified). Keys other than the per-instance ones (``image_id``, …) are passed on.
    """

    def __init__(
        self,
        hflip: float = 0.5,
        vflip: float = 0.0,
        *,
        scale_range: tuple[float, float] | None = None,
        jitter: bool | float = False,
        seed: int | None = None,
    ) -> None:
        for name, p in (("hflip", hflip), ("vflip", vflip)):
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"{name} must be a probability in [0, 1]; got {p!r}")
        if scale_range is not None:
            low, high = scale_range
            if not 0 < low <= high:
                raise ValueError(f"scale_range must be (low, high) with 0 < low <= high; got {scale_range}")
            scale_range = (float(low), float(high))
        strength = jitter_strength(jitter)
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"jitter must be true, false or a strength in [0, 1]; got {jitter!r}")
        self.hflip = float(hflip)
        self.jitter = strength
        self.vflip = float(vflip)
        self.scale_range = scale_range
        self.seed = seed
        self._generator: torch.Generator | None = None

    def _own_generator(self) -> torch.Generator | None:
        if self.seed is not None and self._generator is None:
            self._generator = torch.Generator().manual_seed(self.seed)
        return self._generator

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_generator"] = None  # rebuilt from the seed where it is unpickled
        return state

    def __call__(
        self, image: torch.Tensor, target: Target, *, generator: torch.Generator | None = None
    ) -> tuple[torch.Tensor, Target]:
        if image.ndim != 3:
            raise ValueError(f"expected an image (C, H, W); got shape {tuple(image.shape)}")
        if generator is None:
            generator = self._own_generator()
        draws = torch.rand(3, generator=generator)  # scale, hflip, vflip
        target = dict(target)
        if self.scale_range is not None:
            low, high = self.scale_range
            image, target = self.rescale(image, target, low + (high - low) * float(draws[0]))
        if float(draws[1]) < self.hflip:
            image = _flip(image, target, -1)
        if float(draws[2]) < self.vflip:
            image = _flip(image, target, -2)
        if self.jitter > 0:
            image = _colour_jitter(image, self.jitter, generator)
        return image, target

    @staticmethod
    def rescale(image: torch.Tensor, target: Target, factor: float) -> tuple[torch.Tensor, Target]:
        """Resize image and masks by ``factor``; boxes and areas from the new masks; vanished instances dropped."""
        if "masks" not in target:
            raise ValueError("rescaling needs the target's masks, to recompute its boxes")
        height, width = image.shape[-2:]
        size = (max(1, round(height * factor)), max(1, round(width * factor)))
        if size == (height, width):
            return image, dict(target)
        image = torch.nn.functional.interpolate(
            image[None].float(), size=size, mode="bilinear", align_corners=False, antialias=True
        )[0].clamp_(0.0, 1.0)
        masks = _resize_masks(target["masks"], size)  # (N, h, w)
        keep = masks.flatten(1).amax(dim=1) != 0  # instances too small to survive the resize vanish
        masks = masks[keep]
        target = {key: value[keep] if key in _PER_INSTANCE else value for key, value in target.items()}
        target["masks"] = masks
        target["boxes"] = masks_to_boxes(masks)
        if "area" in target:
            target["area"] = mask_areas(masks)
        return image, target

    def __repr__(self) -> str:
        return (
            f"InstanceTrainTransforms(hflip={self.hflip}, vflip={self.vflip}, "
            f"scale_range={self.scale_range}, jitter={self.jitter}, seed={self.seed})"
        )
