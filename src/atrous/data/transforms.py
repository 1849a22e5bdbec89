"""Paired image + mask transforms on ``torchvision.transforms.v2``.

Every transform here takes and returns ``(image, mask)``: image ``uint8 (3, H, W)`` in,
``float32 (3, h, w)`` normalised out; mask ``int64 (H, W)`` in and out. Inside, the pair is
wrapped as ``tv_tensors.Image`` / ``tv_tensors.Mask`` so that v2 applies each geometric
step to both with the same parameters and each colour step to the image only.

Masks are only ever resized by nearest neighbour with aligned pixel centres
(``nearest-exact``): interpolating labels would invent classes at boundaries. (v2's own
``Resize`` uses floor-based ``nearest`` for masks, which shifts them against the bilinear
image by up to half an input pixel; hence :class:`RandomScale` and :class:`ResizeTo`.)
Padding fills the image with 0 and the mask with ``IGNORE_INDEX``, so padded pixels
never count in the loss or the metrics.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from .constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD


def _pair(size: int | Sequence[int], name: str) -> tuple[int, int]:
    pair = (size, size) if isinstance(size, int) else tuple(int(s) for s in size)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{name} must be a positive int or (height, width); got {size!r}")
    return pair  # type: ignore[return-value]


def _spatial_size(flat_inputs: list[Any]) -> tuple[int, int]:
    sizes = {tuple(F.get_size(x)) for x in flat_inputs if isinstance(x, (tv_tensors.Image, tv_tensors.Mask))}
    if len(sizes) != 1:
        raise ValueError(f"image and mask must have one (height, width); got sizes {sorted(sizes)}")
    return sizes.pop()  # type: ignore[return-value]


def _resize(inpt: Any, size: list[int]) -> Any:
    """Images bilinear with antialiasing; masks nearest-exact; anything else unchanged."""
    if isinstance(inpt, tv_tensors.Mask):
        plain = inpt.as_subclass(torch.Tensor)
        flat = plain.reshape(-1, *plain.shape[-2:])  # resize_image wants (…, C, H, W)
        out = F.resize_image(flat, size, interpolation=v2.InterpolationMode.NEAREST_EXACT)
        return tv_tensors.wrap(out.reshape(*plain.shape[:-2], *size), like=inpt)
    if isinstance(inpt, tv_tensors.Image):
        if inpt.dtype == torch.uint8 and list(size) == [1, 1]:
            # PyTorch's uint8 antialiased kernel fails an internal assert for a 1×1 output
            # (UpSampleKernelAVXAntialias.h, torch 2.15); the float kernel does not.
            out = F.resize(inpt.float(), size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
            return tv_tensors.wrap(out.round_().clamp_(0, 255).to(torch.uint8), like=inpt)
        return F.resize(inpt, size, interpolation=v2.InterpolationMode.BILINEAR, antialias=True)
    return inpt


def check_base_size(base_size: Any, *, allowed: str = "a positive integer or None") -> int | None:
    """``base_size`` when it is None or a positive integer (not a bool); else ValueError
    saying it must be ``allowed``. The one check of a shorter side, in training and at test."""
    if base_size is not None and (isinstance(base_size, bool) or not isinstance(base_size, int) or base_size < 1):
        raise ValueError(f"base_size must be {allowed}, got {base_size!r}")
    return base_size


class RandomScale(v2.Transform):
    """Resize image and mask by one random factor drawn uniformly from ``scale_range``.

    The multi-scale augmentation of DeepLab (v2 §4, v3 §4: factors 0.5–2.0), which keeps
    the aspect ratio, unlike v2's ``RandomResize`` (a random shorter side).

    With ``base_size`` the factor is relative to the image brought to that shorter side
    (torchvision's segmentation reference calls it ``base_size`` too): photos of any size
    then show their content at one scale, the one :func:`atrous.inference.tta.base_scales`
    gives the network at test time.
    """

    def __init__(self, scale_range: tuple[float, float] = (0.5, 2.0), base_size: int | None = None) -> None:
        super().__init__()
        low, high = scale_range
        if not 0 < low <= high:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high; got {scale_range}")
        self.scale_range = (float(low), float(high))
        self.base_size = check_base_size(base_size)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        height, width = _spatial_size(flat_inputs)
        factor = float(torch.empty(()).uniform_(*self.scale_range))
        if self.base_size is not None:
            factor *= self.base_size / min(height, width)
        return {"size": [max(1, round(height * factor)), max(1, round(width * factor))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _resize(inpt, params["size"])


class ResizeTo(v2.Transform):
    """Resize image (bilinear) and mask (nearest-exact) to ``size``.

    ``size`` is ``(height, width)``, or an int for the shorter side with the aspect ratio
    kept (as in torchvision's ``Resize``).
    """

    def __init__(self, size: int | tuple[int, int]) -> None:
        super().__init__()
        self.size = size if isinstance(size, int) else _pair(size, "size")
        if isinstance(size, int) and size < 1:
            raise ValueError(f"size must be positive; got {size}")

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if not isinstance(self.size, int):
            return {"size": list(self.size)}
        height, width = _spatial_size(flat_inputs)
        short = min(height, width)
        return {"size": [max(1, round(height * self.size / short)), max(1, round(width * self.size / short))]}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        return _resize(inpt, params["size"])


class ElasticDeformation(v2.Transform):
    """Smooth random elastic deformation of image and mask: U-Net's augmentation (Ronneberger et al. 2015, §3.1).

    "Random displacement vectors on a coarse 3 by 3 grid", each component drawn from a
    Gaussian of ``sigma`` pixels standard deviation, upsampled bicubically to one
    displacement per pixel; every output pixel ``p`` then takes the input at
    ``p + displacement(p)``. The coarse grid spans the image corner to corner. The image is
    sampled bilinearly, the mask by nearest neighbour with the *same* field, so labels are
    only ever copied, never blended into new ones. Outside the image both are mirrored
    (reflection), as U-Net mirrors its input borders; a mirrored label is a real label, so
    no ignore pixels appear. The field comes from torch's global generator, so seeding
    torch (as :class:`~atrous.engine.sampling.KeyedAugmentation` does) reproduces it.

    Works on ``tv_tensors.Image`` (uint8 or float, any number of channels, leading batch
    dimensions allowed) and ``tv_tensors.Mask`` together; other inputs pass unchanged.

    Args:
        grid: points per side of the coarse grid, >= 2 (the paper: 3).
        sigma: standard deviation of the coarse displacements in pixels, >= 0 (the
            paper: 10); 0 leaves the inputs unchanged.
        p: probability of deforming a sample at all.
    """

    def __init__(self, grid: int = 3, sigma: float = 10.0, p: float = 1.0) -> None:
        super().__init__()
        if isinstance(grid, bool) or not isinstance(grid, int) or grid < 2:
            raise ValueError(f"grid must be an integer >= 2, got {grid!r}")
        if not math.isfinite(sigma) or sigma < 0:
            raise ValueError(f"sigma must be a finite number >= 0, got {sigma!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.grid = grid
        self.sigma = float(sigma)
        self.p = float(p)

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        if self.p < 1.0 and float(torch.rand(())) >= self.p:
            return {"grid": None}
        if self.sigma == 0:
            return {"grid": None}  # exactly the identity, without resampling round-off
        height, width = _spatial_size(flat_inputs)
        coarse = torch.randn(1, 2, self.grid, self.grid) * self.sigma  # (dx, dy) in pixels
        # align_corners=True puts the outer coarse points on the corner pixels.
        field = torch.nn.functional.interpolate(coarse, size=(height, width), mode="bicubic", align_corners=True)[0]
        ys = torch.arange(height, dtype=torch.float32).view(-1, 1)
        xs = torch.arange(width, dtype=torch.float32).view(1, -1)
        # grid_sample's coordinates with align_corners=False: pixel i's centre is (2i + 1)/n − 1,
        # which holds for any size, 1 included; reflection then mirrors about the image's edges.
        x = (2 * (xs + field[0]) + 1) / width - 1
        y = (2 * (ys + field[1]) + 1) / height - 1
        return {"grid": torch.stack([x, y], dim=-1).unsqueeze(0)}  # (1, H, W, 2)

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        grid = params["grid"]
        if grid is None or not isinstance(inpt, (tv_tensors.Image, tv_tensors.Mask)):
            return inpt
        plain = inpt.as_subclass(torch.Tensor)
        height, width = plain.shape[-2:]
        if isinstance(inpt, tv_tensors.Mask):
            # float64 holds every int32 label exactly; nearest sampling copies them.
            flat = plain.reshape(-1, 1, height, width).to(torch.float64)
            mode, work = "nearest", torch.float64
        else:
            flat = plain.reshape(-1, *plain.shape[-3:])
            mode = "bilinear"
            work = plain.dtype if plain.dtype in (torch.float32, torch.float64) else torch.float32
            flat = flat.to(work)
        grid = grid.to(device=plain.device, dtype=work).expand(flat.shape[0], -1, -1, -1)
        out = torch.nn.functional.grid_sample(flat, grid, mode=mode, padding_mode="reflection", align_corners=False)
        if not plain.is_floating_point():
            info = torch.iinfo(plain.dtype)
            out = out.round().clamp(info.min, info.max)
        return tv_tensors.wrap(out.to(plain.dtype).reshape(plain.shape), like=inpt)


class PairedTransform:
    """Apply a v2 pipeline to an ``(image, mask)`` pair of plain tensors; return plain tensors.

    Args:
        pipeline: v2 transforms, run on ``tv_tensors.Image`` and ``tv_tensors.Mask``.
    """

    def __init__(self, pipeline: v2.Transform) -> None:
        self.pipeline = pipeline

    def __call__(self, image: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if image.ndim != 3 or mask.ndim != 2:
            raise ValueError(
                f"expected image (3, H, W) and mask (H, W); got {tuple(image.shape)} and {tuple(mask.shape)}"
            )
        image, mask = self.pipeline(tv_tensors.Image(image), tv_tensors.Mask(mask))
        return image.as_subclass(torch.Tensor), mask.as_subclass(torch.Tensor)

    def __repr__(self) -> str:
        return f"PairedTransform({self.pipeline})"


def _to_float_and_normalize(mean: Sequence[float], std: Sequence[float]) -> list[v2.Transform]:
    return [
        v2.ToDtype({tv_tensors.Image: torch.float32, "others": None}, scale=True),  # uint8 0..255 -> 0..1
        v2.Normalize(mean=list(mean), std=list(std)),
    ]


#: What ``jitter=True`` means: brightness, contrast and saturation each by ±0.2.
DEFAULT_JITTER = 0.2


def jitter_strength(jitter: bool | float) -> float:
    """The ± range of brightness, contrast and saturation that ``data.jitter`` asks for (0: none)."""
    return DEFAULT_JITTER if jitter is True else float(jitter)


def train_transforms(
    crop_size: int | tuple[int, int],
    *,
    scale_range: tuple[float, float] | None = (0.5, 2.0),
    hflip: float = 0.5,
    jitter: bool | float = True,
    elastic: bool | float = False,
    mirror_margin: int = 0,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    base_size: int | None = None,
) -> PairedTransform:
    """The DeepLab training augmentation for ``(image, mask)`` pairs.

    Random scale (``scale_range``, ``None`` to skip; relative to the image brought to the
    shorter side ``base_size`` when one is given, see :class:`RandomScale`) → mirror padding by ``mirror_margin``
    (image and mask alike; the unpadded U-Net's context, so that crops whose centre is
    supervised reach the image border, U-Net §2) → pad to at least ``crop_size`` (image
    0, mask ``IGNORE_INDEX``) → random crop of ``crop_size`` → horizontal flip with
    probability ``hflip`` → elastic deformation (U-Net's, see
    :class:`ElasticDeformation`; off by default, ``True`` for its 10-pixel coarse
    displacements or a number for another standard deviation) → colour jitter of the image
    (brightness, contrast and saturation by ±0.2, or by ±``jitter`` if a number; off with
    ``False``) → float in 0..1 → normalise with ``mean`` and ``std``.

    The deformation comes after the crop, so its cost and its displacement scale are those
    of the crop whatever the image size.

    Returns:
        A callable ``(image uint8 (3, H, W), mask int64 (H, W)) -> (image float32
        (3, h, w), mask int64 (h, w))`` with ``(h, w) == crop_size``, so the default
        collate stacks a batch.
    """
    crop = _pair(crop_size, "crop_size")
    steps: list[v2.Transform] = []
    if scale_range is not None or base_size is not None:
        steps.append(RandomScale(scale_range or (1.0, 1.0), base_size))
    if mirror_margin > 0:
        steps.append(v2.Pad(mirror_margin, padding_mode="reflect"))
    steps.append(v2.RandomCrop(crop, pad_if_needed=True, fill={tv_tensors.Image: 0, tv_tensors.Mask: IGNORE_INDEX}))
    if hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=hflip))
    elastic_sigma = 10.0 if elastic is True else float(elastic)
    if elastic_sigma > 0:
        steps.append(ElasticDeformation(sigma=elastic_sigma))
    strength = jitter_strength(jitter)
    if strength > 0:
        steps.append(v2.ColorJitter(brightness=strength, contrast=strength, saturation=strength))
    steps += _to_float_and_normalize(mean, std)
    return PairedTransform(v2.Compose(steps))


def eval_transforms(
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    resize: int | tuple[int, int] | None = None,
) -> PairedTransform:
    """Evaluation: optionally resize (image bilinear, mask nearest; see :class:`ResizeTo`), then float + normalise.

    Without ``resize`` images keep their size, so batches of different sizes need
    ``batch_size=1`` (or a fixed ``resize``); metrics are computed at the mask's size.
    """
    steps: list[v2.Transform] = [ResizeTo(resize)] if resize is not None else []
    return PairedTransform(v2.Compose(steps + _to_float_and_normalize(mean, std)))


def denormalize(
    image: torch.Tensor, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD
) -> torch.Tensor:
    """Undo the normalisation of ``(3, H, W)`` or ``(B, 3, H, W)`` images: ``uint8`` 0..255 for overlays."""
    mean_t = torch.as_tensor(mean, dtype=image.dtype, device=image.device).view(3, 1, 1)
    std_t = torch.as_tensor(std, dtype=image.dtype, device=image.device).view(3, 1, 1)
    return ((image * std_t + mean_t) * 255).round().clamp(0, 255).to(torch.uint8)
