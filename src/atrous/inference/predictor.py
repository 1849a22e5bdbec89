"""Segment real images: any input type, any size, within a memory budget, fast by default.

``Predictor(model)(image)`` takes a path, a PIL image, a NumPy array or a tensor and
returns a :class:`Prediction` (labels, optionally class probabilities, and a colour
overlay on demand). How the image is run is decided per image:

* **whole** — the image, mirror-padded to a multiple of the output stride and cropped
  back, in one forward pass;
* **tiled** — windows with blended overlaps, or the unpadded U-Net's overlap-tile
  (:mod:`atrous.inference.tiling`), when the whole image would not fit the memory budget.
  The tile side and the tiles per batch are the largest that fit: the model's working
  memory is measured once on two small probes (:mod:`atrous.inference.memory`) and
  extrapolated, so the plan follows the real model, precision and test-time augmentation.

The fast path (``precision="auto"``, the default) runs a copy of the model with its batch
norms folded into the convolutions, in channels_last, inside ``torch.inference_mode``, in
fp32 or under bf16 autocast — whichever is measured to be faster on this machine with the
same labels (:func:`atrous.inference.fast.inference_path`; the decision is cached per
machine and printed by ``atrous predict``); ``compile=True`` adds ``torch.compile``.
``precision="fp32"`` runs the model exactly as given; an int8 model from ``atrous
quantize`` runs as it is.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from ..data.constants import IMAGENET_MEAN, IMAGENET_STD
from ..data.io import pil_to_rgb_array, read_image
from ..data.palette import default_palette
from ..models import task_of
from .crf import CRFParams, crf_memory_bytes, refine_with_crf, resolve_crf
from .fast import inference_path, is_int8_model
from .int8 import fp32_architecture
from .memory import MemoryModel, format_bytes, measure_memory, parse_bytes, plan_tiles
from .temperature import check_temperature, scaled_probabilities
from .tta import base_scales, model_base_size, predict_batch, predict_windows, returns_probabilities
from .visualize import overlay

MODES = ("auto", "whole", "tiled")
ImageLike = str | os.PathLike | Image.Image | np.ndarray | torch.Tensor


def as_rgb_uint8(image: ImageLike) -> torch.Tensor:
    """Any supported image as a ``uint8`` tensor of shape (3, H, W).

    Paths are read with :func:`atrous.data.io.read_image` (EXIF orientation, 16-bit,
    palette and alpha handled). Arrays may be (H, W) grayscale or (H, W, 3|4) RGB(A),
    ``uint8`` or float in 0..1; tensors (3, H, W) or (H, W), ``uint8`` or float in 0..1.
    """
    if isinstance(image, str | os.PathLike):
        return read_image(Path(image))
    if isinstance(image, Image.Image):
        return torch.from_numpy(pil_to_rgb_array(image)).permute(2, 0, 1).contiguous()
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = array[..., None].repeat(3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise ValueError(f"image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
        tensor = torch.from_numpy(np.ascontiguousarray(array[..., :3])).permute(2, 0, 1)
    elif isinstance(image, torch.Tensor):
        tensor = image.detach().cpu()
        if tensor.ndim == 2:
            tensor = tensor.unsqueeze(0).expand(3, -1, -1)
        if tensor.ndim != 3 or tensor.shape[0] != 3:
            raise ValueError(f"image tensor must be (3, H, W) or (H, W), got shape {tuple(image.shape)}")
    else:
        raise TypeError(f"image must be a path, PIL image, NumPy array or tensor, got {type(image).__name__}")
    if tensor.dtype == torch.uint8:
        return tensor.contiguous()
    if tensor.is_floating_point():
        if tensor.numel() and (tensor.min() < 0 or tensor.max() > 1):
            raise ValueError("a floating-point image must hold values in 0..1 (or pass uint8 0..255)")
        return (tensor * 255).round().to(torch.uint8).contiguous()
    raise ValueError(f"image must be uint8 or floating point in 0..1, got {tensor.dtype}")


@dataclass
class Prediction:
    """One image's result: ``labels`` (H, W), the input ``image`` (H, W, 3) uint8, and
    ``probabilities`` (classes, H, W) float32 when asked for."""

    labels: np.ndarray
    image: np.ndarray
    palette: list[tuple[int, int, int]]
    probabilities: np.ndarray | None = None
    mode: str = "whole"
    tile: int | None = None

    def overlay(self, alpha: float = 0.5) -> np.ndarray:
        """The image with each class painted in its palette colour at opacity ``alpha``."""
        return overlay(self.image, self.labels, self.palette, alpha)


class Predictor:
    """Turns images into label maps with a trained model.

    Args:
        model: a segmentation model (atrous's, or any module returning (B, C, H, W) logits).
        device: where to run it.
        mean, std: the normalisation it was trained with (default: ``model.metadata``'s,
            else ImageNet's).
        precision: ``auto`` (the fast path, its precision measured), ``fp32`` (the model as
            given), ``bf16``, ``fp16``, ``int8`` (a model from ``atrous quantize``).
        compile: ``torch.compile`` the fast model.
        mode: ``auto`` (whole image when it fits the budget, else tiles), ``whole``, ``tiled``.
        tile, tile_batch: force the tile side / tiles per batch (default: planned from the
            budget).
        tile_overlap: fraction shared by neighbouring windows (not used by overlap-tile).
        memory_budget: working memory allowed per image (``"2GiB"``, bytes): activations,
            the normalised image and the label map; the model's weights are not counted.
        scales, flip: test-time augmentation (DeepLab v3 §4.3), applied per window.
        base_size: the network sees each image at this shorter side and its results are
            resized back (:func:`~atrous.inference.tta.base_scales`). Default ``"model"``:
            the side the model was trained at (``model.metadata["base_size"]``, a run's
            ``data.base_size``), else the image's own size; ``None``: the image's own size.
            Not with tiles: the resized image is predicted whole.
        crf: refine the whole image's class probabilities with the fully connected CRF
            (DeepLab v1 §4, v2 §3.2; :mod:`atrous.inference.crf`) before taking labels: a
            preset name (``deeplab_v2``, ``deeplab_largefov``) or
            :class:`~atrous.inference.CRFParams`; None (default) for none.
        palette: colours for overlays (default: ``model.metadata``'s).
        temperature: divides the log-probabilities before the softmax of ``probabilities=True``
            output (:mod:`atrous.inference.temperature`; labels never change). Default: the
            model's own ``model.temperature`` — what the loader read from the model folder's
            ``temperature.json`` — else none.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: str | torch.device = "cpu",
        mean: Sequence[float] | None = None,
        std: Sequence[float] | None = None,
        precision: str = "auto",
        compile: bool = False,
        mode: str = "auto",
        tile: int | None = None,
        tile_batch: int | None = None,
        tile_overlap: float = 0.25,
        memory_budget: int | str = "2GiB",
        scales: Sequence[float] = (1.0,),
        flip: bool = False,
        crf: str | CRFParams | None = None,
        palette: Sequence[Sequence[int]] | None = None,
        temperature: float | None = None,
        base_size: int | str | None = "model",
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, got {mode!r}")
        if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
            raise ValueError(f"tile must be a positive integer, got {tile!r}")
        if not scales or not all(math.isfinite(s) and s > 0 for s in scales):
            raise ValueError(f"scales must be positive finite numbers, got {list(scales)}")
        if task_of(model) == "instance":
            raise ValueError("Predictor is for semantic models; use atrous.inference.InstancePredictor for Mask R-CNN")
        self.device = torch.device(device)
        meta = getattr(model, "metadata", None) or {}
        model = model.to(self.device).eval()
        self.path = inference_path(model, self.device, precision, compile=compile)
        self.precision = self.path.precision  # as resolved: fp32, bf16, fp16 or int8
        self.model = self.path.model
        self.autocast_dtype = self.path.dtype
        self.channels_last = self.path.channels_last
        self.num_classes = int(getattr(model, "num_classes", 0)) or None
        self.output_stride = int(getattr(model, "output_stride", 1))
        self.mean = tuple(float(v) for v in (mean or meta.get("mean", IMAGENET_MEAN)))
        self.std = tuple(float(v) for v in (std or meta.get("std", IMAGENET_STD)))
        self.mode = mode
        self.tile = tile
        self.tile_batch = tile_batch
        self.tile_overlap = tile_overlap
        self.memory_budget = parse_bytes(memory_budget)
        self.scales = tuple(float(s) for s in scales)
        self.flip = flip
        base_size = model_base_size(model, base_size)
        if base_size is not None and (mode == "tiled" or tile is not None):
            raise ValueError(f"base_size={base_size} predicts the resized image whole; tiles need base_size=None")
        self.base_size = base_size
        if temperature is None:
            temperature = getattr(model, "temperature", None)
        self.temperature = None if temperature is None else check_temperature(temperature, "temperature")
        self.crf = resolve_crf(crf)
        palette = palette or meta.get("palette")
        self.palette = [tuple(int(v) for v in c) for c in palette] if palette else None
        self._memory: MemoryModel | None = None

    # -- the forward pass on a batch of normalised windows -------------------------------

    def _scores(self, x: torch.Tensor, output_stride: int = 1) -> torch.Tensor:
        """Float32 scores for normalised images: padded to ``output_stride`` and cropped back
        (:func:`atrous.inference.tta.predict_batch`, what ``atrous eval`` scores too)."""
        return predict_batch(
            self.path, x, output_stride=output_stride, scales=self.scales, flip=self.flip, base_size=self.base_size
        )

    def working_memory(self) -> MemoryModel:
        """The forward pass's measured working memory (bytes = fixed + per_pixel · pixels):
        every scale and flip at the image's own size, or, with ``base_size``, one pass at the
        size it is given (the network's input is then the resized image, not the image)."""
        if self._memory is None:
            path = self.path
            if is_int8_model(self.model):
                # OpenVINO allocates outside PyTorch, where the probe cannot see: plan with the
                # float32 network it was quantized from, which needs more (docs/inference.md).
                path = inference_path(fp32_architecture(self.model), self.device, "fp32")
            if self.base_size is None:
                scales, flip = self.scales, self.flip
            else:
                scales, flip = (1.0,), False
            stride = self.output_stride

            def forward(x: torch.Tensor) -> torch.Tensor:
                return predict_batch(path, x, output_stride=stride, scales=scales, flip=flip)

            with torch.inference_mode():
                self._memory = measure_memory(forward, torch.zeros(1, 3, 1, 1, device=self.device))
        return self._memory

    def plan(self, height: int, width: int, *, probabilities: bool = False) -> tuple[str, int | None, int]:
        """``(mode, tile, tile_batch)`` for an image of this size under the budget."""
        classes = self.num_classes or 21
        pixels = height * width
        fixed = pixels * (3 * 4 + 1) + (pixels * classes * 4 if probabilities else 0)  # image, labels, probs
        if self.crf is not None:  # the whole image's scores are kept for the CRF, which runs after the model
            fixed += pixels * classes * 4
            needs = fixed + crf_memory_bytes(pixels, classes)
            if needs > self.memory_budget:
                raise MemoryError(
                    f"a {height}×{width} image needs {format_bytes(needs)} for the dense CRF, more than the memory "
                    f"budget of {format_bytes(self.memory_budget)}"
                )
        budget = self.memory_budget - fixed
        if budget <= 0:
            raise MemoryError(
                f"a {height}×{width} image needs {format_bytes(fixed)} just for its pixels and labels, more than "
                f"the memory budget of {format_bytes(self.memory_budget)}"
            )
        if self.base_size is not None:  # the network sees the image at base_size, whatever its own size
            if self.mode == "auto":
                self._check_base_size_pass(height, width, classes, budget)
            return "whole", None, 1
        memory = self.working_memory()
        padded = _ceil_to(height, self.output_stride) * _ceil_to(width, self.output_stride)
        whole = memory.bytes_for(padded) + padded * classes * 4 * 2  # + the score map and its softmax
        if self.mode == "whole" or (self.mode == "auto" and self.tile is None and whole * 1.25 <= budget):
            return "whole", None, 1
        if self.tile is not None:
            return "tiled", self.tile, self.tile_batch or 1
        tile_plan = plan_tiles(memory, budget // 2)  # the other half: the blending band and temporaries
        tile = tile_plan.tile
        band = (classes + 1) * tile * width * 4 * 2
        while tile > 64 and band + memory.bytes_for(tile * tile) * 1.25 > budget:
            tile -= 32
            band = (classes + 1) * tile * width * 4 * 2
        return "tiled", tile, self.tile_batch or tile_plan.batch

    def _check_base_size_pass(self, height: int, width: int, classes: int, budget: int) -> None:
        """Refuse an image whose resized copy does not fit: ``base_size`` sets the shorter
        side, so a thin strip (5000×1 at base size 192: 960000×192) grows without bound."""
        assert self.base_size is not None
        factor = max(base_scales((height, width), self.scales, self.base_size))
        seen = (max(1, round(height * factor)), max(1, round(width * factor)))
        padded = _ceil_to(seen[0], self.output_stride) * _ceil_to(seen[1], self.output_stride)
        # One pass at the largest scale, plus its scores resized back and the running average.
        needs = self.working_memory().bytes_for(padded) + height * width * classes * 4 * 3
        if needs * 1.25 > budget:
            raise MemoryError(
                f"a {height}×{width} image is {seen[0]}×{seen[1]} for the network (base size {self.base_size}): "
                f"its forward pass needs about {format_bytes(needs * 1.25)}, more than the memory budget of "
                f"{format_bytes(self.memory_budget)}"
            )

    # -- public API ------------------------------------------------------------------------

    @torch.inference_mode()
    def __call__(self, image: ImageLike, *, probabilities: bool = False) -> Prediction:
        rgb = as_rgb_uint8(image)
        h, w = rgb.shape[-2:]
        mode, tile, batch = self.plan(h, w, probabilities=probabilities)
        x = normalize(rgb.to(self.device).unsqueeze(0), self.mean, self.std)
        labels: torch.Tensor | None = None
        if mode == "whole":
            scores: torch.Tensor | None = self._scores(x, self.output_stride)
        else:
            assert tile is not None
            labels, scores = predict_windows(
                self.path,
                x,
                tile=tile,
                overlap=self.tile_overlap,
                batch_size=batch,
                scales=self.scales,
                flip=self.flip,
                keep_scores=probabilities or self.crf is not None,
            )
        as_probabilities = self._returns_probabilities()
        if self.crf is not None:  # on the whole image's probabilities (tiled: the blended ones)
            assert scores is not None
            scores = refine_with_crf(scores, rgb[None], self.crf, probabilities=as_probabilities)
            labels, as_probabilities = None, True
        if labels is None:
            assert scores is not None
            labels = scores.argmax(1)
        probs = None
        if probabilities and scores is not None:
            probs = scaled_probabilities(scores, logits=not as_probabilities, temperature=self.temperature)
        num_classes = self.num_classes or int(labels.max()) + 1
        palette = self.palette or default_palette(num_classes)
        return Prediction(
            labels=labels[0].cpu().numpy(),
            image=rgb.permute(1, 2, 0).numpy(),
            palette=palette,
            probabilities=None if probs is None else probs[0].float().cpu().numpy(),
            mode=mode,
            tile=tile,
        )

    def predict(self, image: ImageLike) -> torch.Tensor:
        """Just the (H, W) label map, as a tensor."""
        return torch.from_numpy(self(image).labels.astype(np.int64))

    def _returns_probabilities(self) -> bool:
        return returns_probabilities(self.scales, self.flip, self.base_size)


def normalize(rgb: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """uint8 (…, 3, H, W) → float32 ``(x / 255 − mean) / std`` computed as the datasets' eval
    transform computes it (torchvision's ``ToDtype(scale=True)`` then ``Normalize``), so that
    a picture predicted here and the same picture evaluated from a dataset are the same numbers."""
    from torchvision.transforms.v2 import functional as TF

    return TF.normalize(TF.to_dtype(rgb, torch.float32, scale=True), mean=list(mean), std=list(std))


def _ceil_to(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)
