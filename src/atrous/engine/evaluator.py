"""Evaluation: single scale, or multi-scale + flip as DeepLab v3 evaluates (§4.3), with or
without DeepLab's fully connected CRF (v1 §4, v2 §3.2).

Every batch goes through :func:`atrous.inference.tta.predict_batch` (or, with ``tile``,
:func:`~atrous.inference.tta.predict_windows`), the forward pass ``atrous predict`` takes
an image's labels from, and with ``crf`` through :func:`atrous.inference.crf.refine_with_crf`
as :class:`~atrous.inference.Predictor` does: the labels scored here are the labels
prediction writes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..data.constants import IGNORE_INDEX, IMAGENET_MEAN, IMAGENET_STD
from ..data.transforms import denormalize
from ..inference.crf import CRFParams, refine_with_crf, resolve_crf
from ..inference.fast import InferencePath
from ..inference.predictor import normalize
from ..inference.tta import predict_batch, predict_windows, returns_probabilities
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
    crf: str | CRFParams | None = None,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    base_size: int | None = None,
) -> ConfusionMatrix:
    """Accumulate one dataset-level confusion matrix over ``loader`` (reduced across ranks).

    ``base_size``: the network sees each image at that shorter side (the model's
    ``data.base_size``; :func:`~atrous.inference.tta.base_scales`), scored at its own size.

    ``model``: a module, run as it is under ``autocast_dtype`` (the trainer's model
    mid-run), or the :class:`~atrous.inference.InferencePath` ``atrous predict`` builds
    (``atrous eval``: the same fast copy, precision and layout).

    ``on_batch(images, masks, scores, labels)``, when given, sees every batch before it is
    counted: the normalised images, the masks, the float32 scores (B, C, H, W) — logits with
    one scale and no flip, else averaged probabilities
    (:func:`~atrous.inference.tta.returns_probabilities`), and with ``crf`` the CRF's
    marginals — and the labels counted
    (``atrous eval --report`` takes its per-image figures from there).

    ``crf``: refine each image's probabilities with the fully connected CRF (a preset name
    or :class:`~atrous.inference.CRFParams`). The CRF needs the picture's uint8 RGB, which
    is recovered exactly from the normalised batch with ``mean`` and ``std`` (those the
    dataset normalised with: ImageNet's for :func:`~atrous.engine.tasks.semantic.build_eval_dataset`);
    a batch they do not reproduce is refused rather than scored on other colours.
    """
    one_at_a_time = isinstance(model, InferencePath)
    if one_at_a_time:
        if autocast_dtype is not None:
            raise ValueError("an InferencePath runs in its own precision: pass no autocast_dtype with it")
        run = model
    else:
        run = InferencePath.as_given(model, autocast_dtype)
    crf = resolve_crf(crf)
    if base_size is not None and tile is not None:
        raise ValueError(f"base_size={base_size} resizes each image for the network, tile={tile} tiles it: give one")
    was_training = run.model.training
    run.model.eval()
    matrix = ConfusionMatrix(num_classes, ignore_index=ignore_index, device=device)
    try:
        for batch_images, batch_masks in tqdm(loader, desc="eval", leave=False, disable=not progress):
            batch_images = batch_images.to(device, non_blocking=True)
            batch_masks = batch_masks.to(device, non_blocking=True)
            # `atrous eval` (an InferencePath) runs the model on one image at a time, as predict
            # does: a batched convolution rounds differently, and a near tie would then go the
            # other way. The trainer's mid-run evaluation keeps its batches.
            pairs = (
                zip(batch_images.split(1), batch_masks.split(1), strict=True)
                if one_at_a_time
                else [(batch_images, batch_masks)]
            )
            for images, masks in pairs:
                if tile is None:
                    scores = predict_batch(run, images, scales=scales, flip=flip, base_size=base_size)
                    labels = None
                else:
                    labels, scores = predict_windows(
                        run,
                        images,
                        tile=tile,
                        overlap=tile_overlap,
                        scales=scales,
                        flip=flip,
                        keep_scores=crf is not None or on_batch is not None,
                    )
                if crf is not None:
                    rgb = uint8_pictures(images, mean, std)
                    scores = refine_with_crf(
                        scores, rgb, crf, probabilities=returns_probabilities(scales, flip, base_size)
                    )
                    labels = None
                if labels is None:
                    labels = scores.argmax(dim=1)
                if on_batch is not None:
                    on_batch(images, masks, scores, labels)
                matrix.update(labels.long(), masks)
    finally:
        run.model.train(was_training)
    matrix.all_reduce()
    return matrix


def uint8_pictures(images: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """The uint8 RGB pictures a batch of normalised images was made from: round((x·std + mean)·255).

    Exact for images the datasets' eval transform normalised (uint8 → /255 → Normalize, as
    :func:`atrous.inference.predictor.normalize` computes it): the error of the inverse is
    far below half a grey level. Normalising the result again must give the batch back;
    other ``mean``/``std``, or images resized after normalising, do not, and are refused.
    """
    rgb = denormalize(images.float(), mean, std)
    again = normalize(rgb, mean, std)
    if not torch.allclose(again, images.float(), rtol=0.0, atol=1e-4):
        error = float((again - images.float()).abs().max())
        raise ValueError(
            f"the evaluation images are not uint8 pictures normalised with mean {list(mean)} and std {list(std)} "
            f"(off by up to {error:.3g} after rounding): the CRF needs the pictures' colours"
        )
    return rgb
