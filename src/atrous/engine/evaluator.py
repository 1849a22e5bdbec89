"""Evaluation: single scale, or multi-scale + flip as DeepLab v3 evaluates (§4.3)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from contextlib import nullcontext

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.constants import IGNORE_INDEX
from ..layers.upsample import resize
from ..metrics import ConfusionMatrix

# DeepLab v3 §4.3: "we apply multi-scale inputs during test ... scales = {0.5, 0.75, 1.0,
# 1.25, 1.5, 1.75}" and "include left-right flipped inputs".
DEEPLAB_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def returns_probabilities(scales: Sequence[float], flip: bool) -> bool:
    """Whether :func:`predict_probabilities` returns softmax probabilities (several passes
    averaged) rather than the model's logits (one scale, no flip)."""
    return not (tuple(scales) == (1.0,) and not flip)


@torch.no_grad()
def predict_probabilities(
    model: nn.Module,
    images: torch.Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    tile: int | None = None,
    tile_overlap: float = 0.25,
) -> torch.Tensor:
    """Class scores at the input size, averaged over scales and flips.

    With one scale and no flip the model's logits are returned as they are (argmax is the
    same). Otherwise each pass is resized back to the input size and the softmax
    probabilities are averaged, as the DeepLab reference evaluation does. With ``tile``
    every pass is predicted in tiles (:func:`atrous.inference.tiling.predict_tiled`).
    """
    if tile is not None:
        from ..inference.tiling import predict_tiled

        net = model
        model = functools.partial(predict_tiled, net, tile=tile, overlap=tile_overlap)  # type: ignore[assignment]
    if not returns_probabilities(scales, flip):
        return model(images)
    size = images.shape[-2:]
    total = None
    for scale in scales:
        x = images if scale == 1.0 else resize(images, (max(1, round(size[0] * scale)), max(1, round(size[1] * scale))))
        for flipped in (False, True) if flip else (False,):
            logits = model(x.flip(-1) if flipped else x)
            if flipped:
                logits = logits.flip(-1)
            probs = resize(logits.float(), size).softmax(dim=1)
            total = probs if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))  # type: ignore[operator]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loader: DataLoader,
    num_classes: int,
    *,
    device: torch.device,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    autocast_dtype: torch.dtype | None = None,
    progress: bool = False,
    ignore_index: int = IGNORE_INDEX,
    tile: int | None = None,
    tile_overlap: float = 0.25,
) -> ConfusionMatrix:
    """Accumulate one dataset-level confusion matrix over ``loader`` (reduced across ranks)."""
    was_training = model.training
    model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=device)
    amp = torch.autocast(device.type, dtype=autocast_dtype) if autocast_dtype is not None else nullcontext()
    try:
        for images, masks in tqdm(loader, desc="eval", leave=False, disable=not progress):
            images = images.to(device, non_blocking=True)
            masks = masks.to(device, non_blocking=True)
            with amp:
                scores = predict_probabilities(
                    model, images, scales=scales, flip=flip, tile=tile, tile_overlap=tile_overlap
                )
            matrix.update(scores.argmax(dim=1), masks)
    finally:
        model.train(was_training)
    matrix.all_reduce()
    return matrix
