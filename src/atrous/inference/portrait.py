"""Portrait mode: the subject stays sharp, the background is blurred as by a wide-open lens.

The Pixel 2's single-camera portrait mode segments the person with a network and blurs
the rest. :func:`portrait` does the same in four steps:

1. **Subject probability** ``p`` (H, W) in [0, 1]: the softmax probability of the subject
   class from a segmentation model (VOC's ``"person"``, or class 1 of a two-class model),
   predicted with the shorter side at ``inference_size`` px and resized bilinearly to the
   image; or a given mask (0/255 or 0/1, resized nearest to the image when it is a scaled
   copy of it).
2. **Soft alpha** ``α``: ``smoothstep(0.25, 0.75, p)`` sharpens an unsure model's ramp
   (a 0/1 mask passes unchanged), then a Gaussian of standard deviation ``feather`` px
   (default ``max(1, min(H, W) / 400)``: 1 px at 400 px, 7.5 px at 3000) softens the edge
   so the cut-out does not look pasted on.
3. **Background blur by normalised convolution.** Blurring the whole photo and pasting
   the sharp subject over it leaves a halo: background pixels near the subject average
   in the subject's colours. Here each pixel's blurred value averages *background pixels
   only*::

       w = clamp(1 − 2α, 0, 1)            # 1 on background, 0 where α ≥ 0.5
       B = blur(image · w) / blur(w)

   ``w`` is 0 at and inside the edge's midpoint, so not even the feathered rim of the
   subject leaks into the average (``1 − α`` would let it in at half weight); near the
   edge the denominator just shrinks and the average is taken over the background that
   is there. The same division corrects the image border (zero padding has weight 0).
   Where ``blur(w) < 1e-3`` — deeper inside the subject than the blur radius, where
   ``α ≈ 1`` hides the result — the image itself is used. The kernel is a disc of radius
   ``blur`` px (a lens's bokeh; by FFT) or a Gaussian with σ = ``blur`` / 2 (separable).
4. **Composite** ``out = α · image + (1 − α) · B``.
"""

from __future__ import annotations

import inspect
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.constants import IMAGENET_MEAN, IMAGENET_STD

ImageInput = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor

DEFAULT_BLUR = 25.0
DEFAULT_INFERENCE_SIZE = 520  # torchvision's segmentation weights are evaluated at this shorter side
KERNELS = ("disc", "gaussian")
_SMOOTHSTEP_EDGES = (0.25, 0.75)
_MIN_WEIGHT = 1e-3  # blur(w) below this: no background within reach, keep the image
_ASPECT_TOLERANCE = 0.02  # a mask this close to the image's aspect ratio is a scaled copy of it
# With a base size the shorter side is brought to it, so a strip grows without bound (5000×1 at
# base size 192 is 960000×192 for the network); photos are far from this.
MAX_ASPECT_AT_BASE_SIZE = 20
_MAX_DIRECT_RADIUS = 8  # Gaussians wider than this are convolved by FFT
_NUMPY_FFT_BELOW = 1 << 20  # FFT sizes (pixels) below which NumPy's FFT beats PyTorch's on CPU


def portrait(
    image: ImageInput,
    *,
    model: torch.nn.Module | None = None,
    mask: ImageInput | None = None,
    subject_class: str | int | None = None,
    blur: float = DEFAULT_BLUR,
    feather: float | None = None,
    kernel: str = "disc",
    device: str | torch.device = "cpu",
    **model_options: Any,
) -> np.ndarray:
    """Blur an image's background, keep its subject sharp (see the module docstring).

    Args:
        image: a file path, a PIL image, a uint8 (H, W, 3) array (or (H, W) grey), or a
            uint8 (3, H, W) tensor.
        model: a segmentation model that finds the subject. Give exactly one of ``model``
            and ``mask``.
        mask: the subject as a mask (path, PIL image or array): 0/255 or 0/1 (bool and
            float in [0, 1] work too), at the image's size or a scaled copy of it.
        subject_class: with ``model``, the subject's class name (looked up in
            ``model.metadata["class_names"]``, any case) or index. Default: ``"person"``,
            or class 1 of a two-class model.
        blur: background blur radius in px (0: no blur).
        feather: edge softness, the σ in px of a Gaussian on the alpha; default
            ``max(1, min(H, W) / 400)``; 0 for none.
        kernel: ``"disc"`` (lens bokeh) or ``"gaussian"`` (σ = ``blur`` / 2).
        device: where the model and the blur run.
        model_options: with ``model``, how it runs, as :func:`subject_probability` takes
            them: ``inference_size`` (the shorter side it sees, default 520; ``None``: full
            resolution), ``base_size`` (default: the side the model was trained at, its
            ``data.base_size``, which replaces ``inference_size``), ``scales``, ``flip``,
            ``tile`` (test-time options), ``mean``, ``std`` (its input normalisation) and
            ``precision`` (default ``auto``).

    Returns:
        The result as a uint8 (H, W, 3) array.

    Raises:
        ValueError: neither or both of ``model`` and ``mask``; an unreadable image or
            mask; a mask of another aspect ratio; an unknown subject class; bad ``blur``,
            ``feather`` or ``kernel``.
    """
    unknown = sorted(set(model_options) - set(_MODEL_OPTIONS))
    if unknown:
        raise TypeError(f"portrait() got unexpected keyword arguments: {', '.join(unknown)}")
    if (model is None) == (mask is None):
        raise ValueError("give exactly one of model= and mask=")
    _check_options(blur, feather, kernel)
    rgb = load_rgb(image)
    height, width = rgb.shape[:2]
    dev = torch.device(device)
    if model is not None:
        probability = subject_probability(rgb, model, subject_class, device=dev, **model_options)
    else:
        probability = torch.from_numpy(load_mask(mask, (height, width)))  # type: ignore[arg-type]
    feather = default_feather(height, width) if feather is None else feather
    with torch.inference_mode():
        pixels = torch.from_numpy(rgb).to(dev).permute(2, 0, 1).float()
        alpha = soft_alpha(probability.to(dev), feather)
        background = blur_background(pixels, alpha, blur, kernel=kernel)
        # out = α·image + (1 − α)·B, in place: pixels + (1 − α)(B − pixels).
        out = background.sub_(pixels).mul_(1 - alpha).add_(pixels)
        return out.add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


def default_feather(height: int, width: int) -> float:
    """The default edge softness: ``max(1, min(H, W) / 400)`` px."""
    return max(1.0, min(height, width) / 400)


def _check_options(blur: float, feather: float | None, kernel: str) -> None:
    if not (isinstance(blur, int | float) and math.isfinite(blur) and blur >= 0):
        raise ValueError(f"blur must be a radius in px, 0 or more, got {blur!r}")
    if feather is not None and not (isinstance(feather, int | float) and math.isfinite(feather) and feather >= 0):
        raise ValueError(f"feather must be 0 or more px, got {feather!r}")
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")


# --- inputs -------------------------------------------------------------------------


def load_rgb(image: ImageInput) -> np.ndarray:
    """Any supported image input as a uint8 (H, W, 3) array (:func:`~atrous.inference.predictor.as_rgb_uint8`)."""
    from .predictor import as_rgb_uint8

    return np.ascontiguousarray(as_rgb_uint8(image).permute(1, 2, 0).numpy())


def load_mask(mask: ImageInput, size: tuple[int, int]) -> np.ndarray:
    """A subject mask as float32 (H, W) in [0, 1] at ``size`` = (H, W).

    0/255 and 0/1 masks (and bool; floats must lie in [0, 1]) are accepted. A mask that is
    a scaled copy of the image (aspect ratio within 2 %) is resized nearest to it.
    """
    source = f"mask {mask}" if isinstance(mask, str | os.PathLike) else "mask"
    if isinstance(mask, str | os.PathLike):
        from ..data.io import read_raw_mask

        array = read_raw_mask(Path(mask))
    elif isinstance(mask, Image.Image):
        array = np.asarray(mask.convert("L") if mask.mode not in ("1", "L") else mask)
    elif isinstance(mask, torch.Tensor):
        array = mask.detach().cpu().numpy()
    elif isinstance(mask, np.ndarray):
        array = mask
    else:
        raise TypeError(f"mask must be a path, a PIL image, a numpy array or a tensor, got {type(mask).__name__}")
    array = np.squeeze(array) if array.ndim > 2 and 1 in array.shape else array
    if array.ndim == 3 and array.shape[-1] in (3, 4) and (array[..., 1:3] == array[..., :1]).all():
        array = array[..., 0]
    if array.ndim != 2:
        raise ValueError(f"{source} must be single-channel (H, W), got shape {array.shape}")
    if array.dtype == np.bool_:
        values = array.astype(np.float32)
    elif np.issubdtype(array.dtype, np.integer):
        top = int(array.max()) if array.size else 0
        if int(array.min()) < 0 or top > 255:
            raise ValueError(f"{source} values must be 0/255 or 0/1, found {array.min()} … {top}")
        values = array.astype(np.float32) / (1.0 if top <= 1 else 255.0)
    elif np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError(f"{source} as floats must lie in [0, 1]")
        values = array.astype(np.float32)
    else:
        raise ValueError(f"{source} has unsupported dtype {array.dtype}")
    height, width = size
    if values.shape != (height, width):
        mh, mw = values.shape
        if abs((mw / mh) / (width / height) - 1) > _ASPECT_TOLERANCE:
            raise ValueError(
                f"{source} is {mw}×{mh} but the image is {width}×{height}, a different aspect ratio; "
                "the mask must be the image's size or a scaled copy of it"
            )
        values = F.interpolate(torch.from_numpy(values)[None, None], size=size, mode="nearest-exact")[0, 0].numpy()
    return np.ascontiguousarray(values)


# --- subject probability from a model -------------------------------------------------


def resolve_subject_class(model: torch.nn.Module, subject_class: str | int | None = None) -> int:
    """The index of the subject class: a name (any case) from ``model.metadata["class_names"]`` or an index.

    ``None`` means ``"person"`` if the model has that class, else class 1 of a two-class model.
    """
    metadata: dict[str, Any] = getattr(model, "metadata", None) or {}
    names = [str(n) for n in metadata.get("class_names") or []]
    num_classes = int(getattr(model, "num_classes", 0) or len(names))
    lowered = [n.lower() for n in names]
    listing = ", ".join(f"{i} {n}" for i, n in enumerate(names)) if names else f"indices 0 … {num_classes - 1}"
    if subject_class is None:
        if "person" in lowered:
            return lowered.index("person")
        if num_classes == 2:
            return 1
        raise ValueError(
            f"the model has no 'person' class and is not a two-class model; choose the subject class ({listing})"
        )
    if isinstance(subject_class, str) and subject_class.strip().isdigit():
        subject_class = int(subject_class)
    if isinstance(subject_class, int):
        if not 0 <= subject_class < num_classes:
            raise ValueError(f"subject class {subject_class} is out of range for a {num_classes}-class model")
        return subject_class
    if subject_class.lower() in lowered:
        return lowered.index(subject_class.lower())
    raise ValueError(f"class {subject_class!r} is not one of the model's classes ({listing})")


def subject_probability(
    image: ImageInput,
    model: torch.nn.Module,
    subject_class: str | int | None = None,
    *,
    device: str | torch.device = "cpu",
    inference_size: int | None = DEFAULT_INFERENCE_SIZE,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    tile: int | None = None,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
    precision: str = "auto",
    base_size: int | str | None = "model",
) -> torch.Tensor:
    """The model's softmax probability of the subject class, float32 (H, W) at the image's size (on CPU).

    Args:
        inference_size: the shorter side (px) the model sees; larger images are scaled down
            for it and the probabilities scaled back. ``None``: full resolution. Not used
            when there is a ``base_size``.
        base_size: the model sees every image, larger or smaller, at this shorter side
            (:func:`atrous.inference.tta.base_scales`), as it was trained to
            (``data.base_size``). Default ``"model"``: ``model.metadata["base_size"]`` when
            the model has one; ``None``: use ``inference_size``.
        scales, flip, tile: test-time options of
            :func:`atrous.inference.tta.predict_probabilities`.
        mean, std: the model's input normalisation; default ``model.metadata``'s, else
            ImageNet's.
        precision: how the model runs, as for :class:`atrous.inference.Predictor`
            (``auto``: the fast path in the precision measured fastest here).
    """
    from .fast import inference_path
    from .tta import base_scales, model_base_size, predict_batch, predict_probabilities, returns_probabilities

    index = resolve_subject_class(model, subject_class)
    rgb = load_rgb(image)
    height, width = rgb.shape[:2]
    metadata = getattr(model, "metadata", None) or {}
    base_size = model_base_size(model, base_size)
    if base_size is not None:
        if tile is not None:
            raise ValueError(f"base_size={base_size} predicts the resized image whole; tiles need base_size=None")
        inference_size = None  # the network sees the photo at base_size instead
        if max(height, width) > MAX_ASPECT_AT_BASE_SIZE * min(height, width):
            (factor,) = base_scales((height, width), (1.0,), base_size)
            raise ValueError(
                f"a {width}×{height} photo would be about {round(width * factor)}×{round(height * factor)} for the "
                f"model (base size {base_size}): portrait mode takes photos whose longer side is at most "
                f"{MAX_ASPECT_AT_BASE_SIZE}× the shorter"
            )
    dev = torch.device(device)
    mean_t = torch.tensor(mean or metadata.get("mean") or IMAGENET_MEAN, dtype=torch.float32, device=dev)
    std_t = torch.tensor(std or metadata.get("std") or IMAGENET_STD, dtype=torch.float32, device=dev)
    path = inference_path(model.to(dev).eval(), dev, precision)
    with torch.inference_mode():
        x = torch.from_numpy(rgb).to(dev).permute(2, 0, 1)[None].float().div_(255)
        if inference_size and min(height, width) > inference_size:
            scale = inference_size / min(height, width)
            small = (max(1, round(height * scale)), max(1, round(width * scale)))
            x = F.interpolate(x, size=small, mode="bilinear", align_corners=False, antialias=True)
        x = (x - mean_t.view(1, 3, 1, 1)) / std_t.view(1, 3, 1, 1)
        if base_size is not None:
            # As predict and eval see it: at base_size, padded to the output stride.
            scores = predict_batch(path, x, scales=tuple(scales), flip=flip, base_size=base_size)
        else:
            if path.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with path.autocast(dev):
                scores = predict_probabilities(path.model, x, scales=tuple(scales), flip=flip, tile=tile)
        if isinstance(scores, dict):  # a model left in train mode with an auxiliary head
            scores = scores["out"]
        scores = scores.float()
        averaged = returns_probabilities(scales, flip, base_size)
        if scores.shape[1] == 1:
            probs = scores if averaged else scores.sigmoid()
            subject = probs if index == 1 else 1 - probs
        else:
            probs = scores if averaged else scores.softmax(dim=1)
            subject = probs[:, index : index + 1]
        if subject.shape[-2:] != (height, width):
            subject = F.interpolate(subject, size=(height, width), mode="bilinear", align_corners=False)
        return subject[0, 0].clamp(0, 1).cpu()


#: What :func:`portrait` passes on to :func:`subject_probability` (its keyword-only options).
_MODEL_OPTIONS = tuple(
    name
    for name, p in inspect.signature(subject_probability).parameters.items()
    if p.kind is p.KEYWORD_ONLY and name != "device"
)


# --- alpha, blur, composite -----------------------------------------------------------


def soft_alpha(probability: torch.Tensor, feather: float) -> torch.Tensor:
    """(H, W) probability → (1, H, W) alpha: smoothstep(0.25, 0.75, p), then a Gaussian of σ = ``feather`` px."""
    lo, hi = _SMOOTHSTEP_EDGES
    t = ((probability.float() - lo) / (hi - lo)).clamp(0, 1)
    alpha = (t * t * (3 - 2 * t))[None]
    if feather > 0:
        # Replicate padding: a subject that touches the image border stays opaque there.
        alpha = _gaussian_blur(alpha, feather, padding="replicate")
    return alpha.clamp_(0, 1)


def blur_background(pixels: torch.Tensor, alpha: torch.Tensor, radius: float, *, kernel: str = "disc") -> torch.Tensor:
    """Blur (C, H, W) ``pixels`` from background pixels only: ``blur(pixels · w) / blur(w)``, ``w = clamp(1 − 2α)``.

    Where no background pixel is within reach (``blur(w) < 1e-3``) the pixels themselves are
    returned; that is deep inside the subject, where the composite shows the image anyway.
    """
    if kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {', '.join(KERNELS)}, got {kernel!r}")
    if radius <= 0:
        return pixels.float().clone()
    weight = (1 - 2 * alpha.float()).clamp_(0, 1)
    stacked = torch.cat([pixels.float() * weight, weight])
    del weight
    blurred = _blur(stacked, radius, kernel)
    del stacked
    numerator, denominator = blurred[:-1], blurred[-1:]
    reached = denominator >= _MIN_WEIGHT
    background = numerator.div_(denominator.clamp(min=_MIN_WEIGHT))
    return torch.where(reached, background, pixels.float())


def _blur(x: torch.Tensor, radius: float, kernel: str) -> torch.Tensor:
    """Zero-padded blur of (C, H, W): a disc of ``radius`` px, or a Gaussian with σ = ``radius`` / 2."""
    return _disc_blur(x, radius) if kernel == "disc" else _gaussian_blur(x, radius / 2, padding="zeros")


def _gaussian_blur(x: torch.Tensor, sigma: float, *, padding: str) -> torch.Tensor:
    """Gaussian blur of a (C, H, W) tensor, kernel truncated at 3σ; ``padding`` is ``"zeros"`` or ``"replicate"``.

    Small kernels run as two 1-D convolutions; from 17 taps on, one FFT convolution is
    faster on CPU (PyTorch's depthwise convolution with long kernels is slow: 36 s for
    a 12-megapixel image at σ = 12.5, against 0.7 s by FFT).
    """
    radius = max(1, math.ceil(3 * sigma))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-0.5 * (taps / sigma) ** 2)
    k = k / k.sum()
    if padding == "replicate":
        x = F.pad(x[None], (radius, radius, radius, radius), mode="replicate")[0]
    if radius > _MAX_DIRECT_RADIUS:
        out = _fft_convolve(x, k[:, None] * k[None, :])
    else:
        channels = x.shape[0]
        out = F.conv2d(x[None], k.view(1, 1, 1, -1).expand(channels, 1, 1, -1), padding=(0, radius), groups=channels)
        out = F.conv2d(out, k.view(1, 1, -1, 1).expand(channels, 1, -1, 1), padding=(radius, 0), groups=channels)[0]
    if padding == "replicate":
        out = out[:, radius:-radius, radius:-radius]
    return out


def disc_kernel(radius: float, device: str | torch.device = "cpu") -> torch.Tensor:
    """A flat disc of ``radius`` px with an anti-aliased rim, summing to 1."""
    r = max(1, math.ceil(radius + 0.5))
    taps = torch.arange(-r, r + 1, dtype=torch.float32, device=device)
    distance = torch.hypot(taps[:, None], taps[None, :])
    k = (radius + 0.5 - distance).clamp(0, 1)
    return k / k.sum()


def _fft_convolve(x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Linear (zero-padded, not circular) 'same' convolution of (C, H, W) with an odd square kernel, by FFT.

    One channel at a time, to keep the complex spectra (8 bytes a value) to one image's worth.
    """
    r = k.shape[0] // 2
    height, width = x.shape[-2:]
    size = (_fast_length(height + 2 * r), _fast_length(width + 2 * r))
    out = torch.empty_like(x)
    if x.device.type == "cpu" and size[0] * size[1] < _NUMPY_FFT_BELOW:
        # PyTorch's CPU FFT (MKL) costs ~25 ms a call whatever the size; NumPy's is faster on small images.
        k_np = np.fft.rfft2(k.numpy(), s=size)
        for c in range(x.shape[0]):
            full = np.fft.irfft2(np.fft.rfft2(x[c].numpy(), s=size) * k_np, s=size)
            out[c] = torch.from_numpy(full[r : r + height, r : r + width].astype(np.float32))
        return out
    k_f = torch.fft.rfft2(k, s=size)
    for c in range(x.shape[0]):
        full = torch.fft.irfft2(torch.fft.rfft2(x[c], s=size).mul_(k_f), s=size)
        out[c] = full[r : r + height, r : r + width]
    return out


def _disc_blur(x: torch.Tensor, radius: float) -> torch.Tensor:
    """Zero-padded convolution of (C, H, W) with a disc of ``radius`` px."""
    return _fft_convolve(x, disc_kernel(radius, x.device))


def _fast_length(n: int) -> int:
    """The smallest 2·3·5-smooth number ≥ n (fast FFT sizes)."""
    while True:
        m = n
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        if m == 1:
            return n
        n += 1


def naive_portrait(image: np.ndarray, alpha: torch.Tensor, radius: float, *, kernel: str = "disc") -> np.ndarray:
    """The halo-prone baseline: blur the whole image, then paste the subject over it (for comparison)."""
    pixels = torch.from_numpy(image).permute(2, 0, 1).float()
    ones = torch.ones_like(alpha)
    stacked = torch.cat([pixels, ones])
    blurred = _blur(stacked, radius, kernel)
    background = blurred[:-1] / blurred[-1:]
    out = alpha * pixels + (1 - alpha) * background
    return out.add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()
