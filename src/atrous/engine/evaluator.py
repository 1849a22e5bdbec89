"""Evaluation: single scale, or multi-scale + flip as DeepLab v3 evaluates (§4.3).

Every batch goes through :func:`atrous.inference.tta.predict_batch` (or, with ``tile``,
:func:`~atrous.inference.tta.predict_windows`), the forward pass ``atrous predict`` takes
an image's labels from: the labels scored here are the labels prediction writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.constants import IGNORE_INDEX
from ..inference.fast import InferencePath
from ..inference.tta import predict_batch, predict_windows
from ..metrics import ConfusionMatrix


@torch.no_grad()
def evaluate(
    model: nn.Module | InferencePath,
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
    on_batch: Callable[[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor], None] | None = None,
) -> ConfusionMatrix:
    """Accumulate one dataset-level confusion matrix over ``loader`` (reduced across ranks).

    ``model``: a module, run as it is under ``autocast_dtype`` (the trainer's model
    mid-run), or the :class:`~atrous.inference.InferencePath` ``atrous predict`` builds
    (``atrous eval``: the same fast copy, precision and layout).

    ``on_batch(images, masks, scores, labels)``, when given, sees every batch before it is
    counted: the normalised images, the masks, the float32 scores (B, C, H, W) — logits with
    one scale and no flip, else averaged probabilities
    (:func:`~atrous.inference.tta.returns_probabilities`) — and the labels counted
    (``atrous eval --report`` takes its per-image figures from there).
    """
    if isinstance(model, InferencePath):
        if autocast_dtype is not None:
            raise ValueError("an InferencePath runs in its own precision: pass no autocast_dtype with it")
        run = model
    else:
        run = InferencePath.as_given(model, autocast_dtype)
    was_training = run.model.training
    run.model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=device)
    try:
        for images, masks in tqdm(loader, desc="eval", leave=False, disable=not progress):
            images = images.to(device, non_blocking=True)
            masks = masks.to(device, non_blocking=True)
            if tile is None:
                scores = predict_batch(run, images, scales=scales, flip=flip)
                labels = scores.argmax(dim=1)
            else:
                keep = on_batch is not None
                labels, scores = predict_windows(
                    run, images, tile=tile, overlap=tile_overlap, scales=scales, flip=flip, keep_scores=keep
                )
            if on_batch is not None:
                on_batch(images, masks, scores, labels)
            matrix.update(labels.long(), masks)
    finally:
        run.model.train(was_training)
    matrix.all_reduce()
    return matrix
