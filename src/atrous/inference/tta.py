"""Test-time augmentation (DeepLab v3 §4.3) and the one forward pass that ``atrous predict``
writes and ``atrous eval`` scores.

:func:`predict_batch` is how a batch of normalised images becomes class scores: mirror-padded
to a multiple of the model's output stride, run (channels_last and under autocast, as the
inference path says) over every test scale and flip, and cropped back. The
:class:`~atrous.inference.Predictor` runs whole images through it and the
evaluator of ``atrous eval`` (and of training) runs every evaluation batch through it, so the
labels evaluation scores are the labels prediction writes.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import nn

from ..data.transforms import check_base_size
from ..layers.padding import mirror_pad
from ..layers.upsample import resize
from .fast import InferencePath
from .tiling import tiled_predict

# DeepLab v3 §4.3: "we apply multi-scale inputs during test ... scales = {0.5, 0.75, 1.0,
# 1.25, 1.5, 1.75}" and "include left-right flipped inputs".
DEEPLAB_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def returns_probabilities(scales: Sequence[float], flip: bool, base_size: int | None = None) -> bool:
    """Whether :func:`predict_probabilities` returns softmax probabilities (several passes
    averaged, or one pass resized back from ``base_size``) rather than the model's logits
    (one scale, no flip, the image's own size)."""
    return base_size is not None or not (tuple(scales) == (1.0,) and not flip)


def base_scales(size: Sequence[int], scales: Sequence[float], base_size: int | None) -> tuple[float, ...]:
    """The factors an image of ``size`` (H, W) is resized by for ``scales`` relative to
    ``base_size``: each scale times ``base_size / min(H, W)``, so that the network sees the
    image at the shorter side the model was trained at (``data.base_size``, and
    :class:`~atrous.data.transforms.RandomScale`). ``base_size=None``: ``scales`` as given."""
    if base_size is None:
        return tuple(float(s) for s in scales)
    factor = check_base_size(base_size) / min(int(size[0]), int(size[1]))
    return tuple(float(s) * factor for s in scales)


def model_base_size(model: nn.Module, base_size: int | str | None = "model") -> int | None:
    """``base_size`` checked, with ``"model"`` meaning the side ``model`` was trained at
    (``model.metadata["base_size"]``, a run's ``data.base_size``; None when it has none)."""
    if base_size == "model":
        trained_at = (getattr(model, "metadata", None) or {}).get("base_size")
        return int(trained_at) if trained_at else None
    return check_base_size(base_size, allowed="a positive integer, 'model' or None")


@torch.no_grad()
def predict_probabilities(
    model: nn.Module | Callable[[torch.Tensor], torch.Tensor],
    images: torch.Tensor,
    *,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    tile: int | None = None,
    tile_overlap: float = 0.25,
    base_size: int | None = None,
) -> torch.Tensor:
    """Class scores at the input size, averaged over scales and flips.

    With one scale and no flip the model's logits are returned as they are (argmax is the
    same). Otherwise each pass is resized back to the input size and the softmax
    probabilities are averaged, as the DeepLab reference evaluation does. Images shrunk
    for a pass are antialiased, as training's scale augmentation shrinks them (DeepLab's
    TensorFlow code resizes without antialiasing in both places). With ``tile``
    every pass is predicted in tiles (:func:`atrous.inference.tiling.predict_tiled`).
    With ``base_size`` the scales are relative to the image brought to that shorter side
    (:func:`base_scales`), and probabilities are returned.
    """
    if base_size is not None:
        if tile is not None:
            raise ValueError("base_size resizes the image for the network, tile tiles it at its own size: give one")
        scales = base_scales(images.shape[-2:], scales, base_size)
    elif not returns_probabilities(scales, flip):
        scales = ()  # the logits path below
    if tile is not None:
        from .tiling import predict_tiled

        net = model
        model = functools.partial(predict_tiled, net, tile=tile, overlap=tile_overlap)
    if not scales:
        return model(images)
    size = images.shape[-2:]
    total = None
    for scale in scales:
        scaled = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        # Shrunk images are low-pass filtered as the training augmentation's were
        # (RandomScale antialiases): without it a photo brought from 1000 to 320 px aliases.
        x = images if scale == 1.0 else resize(images, scaled, antialias=scale < 1.0)
        for flipped in (False, True) if flip else (False,):
            logits = model(x.flip(-1) if flipped else x)
            if flipped:
                logits = logits.flip(-1)
            probs = resize(logits.float(), size).softmax(dim=1)
            total = probs if total is None else total + probs
    return total / (len(scales) * (2 if flip else 1))  # type: ignore[operator]


@torch.no_grad()
def predict_batch(
    run: InferencePath | nn.Module,
    images: torch.Tensor,
    *,
    output_stride: int | None = None,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    base_size: int | None = None,
) -> torch.Tensor:
    """Float32 class scores (B, classes, H, W) for a batch of normalised images (B, 3, H, W).

    ``run`` is how the model runs: an :class:`~atrous.inference.InferencePath` (its module,
    autocast dtype and layout), or a module to run as it is. The images are mirror-padded
    at the bottom and right to a multiple of ``output_stride`` (default: the module's own,
    else 1), put in the path's layout, run under its autocast through
    :func:`predict_probabilities` (every scale and flip) and cropped back: the scores
    :class:`~atrous.inference.Predictor` takes a whole image's labels from (tiles:
    :func:`predict_windows`). ``base_size``: the network sees the images at that shorter
    side (:func:`base_scales`); the scores are at their own size.
    """
    if not isinstance(run, InferencePath):
        run = InferencePath.as_given(run)
    height, width = images.shape[-2:]
    if base_size is not None:
        # Padding to the stride happens at the resized size, inside each pass.
        with run.autocast(images.device):
            scores = predict_probabilities(
                functools.partial(_padded_to_stride, run, output_stride),
                images,
                scales=scales,
                flip=flip,
                base_size=base_size,
            )
        return scores.float()
    stride = int(output_stride or getattr(run.model, "output_stride", 1) or 1)
    images = mirror_pad(images, 0, -height % stride, 0, -width % stride)
    if run.channels_last:
        images = images.contiguous(memory_format=torch.channels_last)
    with run.autocast(images.device):
        scores = predict_probabilities(run.model, images, scales=scales, flip=flip)
    return scores[..., :height, :width].float()


def _padded_to_stride(run: InferencePath, output_stride: int | None, images: torch.Tensor) -> torch.Tensor:
    """The model's scores for ``images``, mirror-padded at the bottom and right to its output
    stride (or ``output_stride``) and put in the path's layout for the pass, cropped back."""
    height, width = images.shape[-2:]
    stride = int(output_stride or getattr(run.model, "output_stride", 1) or 1)
    padded = mirror_pad(images, 0, -height % stride, 0, -width % stride)
    if run.channels_last:
        padded = padded.contiguous(memory_format=torch.channels_last)
    return run.model(padded)[..., :height, :width]


@torch.no_grad()
def predict_windows(
    run: InferencePath | nn.Module,
    images: torch.Tensor,
    *,
    tile: int,
    overlap: float = 0.25,
    batch_size: int = 1,
    scales: Sequence[float] = (1.0,),
    flip: bool = False,
    keep_scores: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Labels (B, H, W) — and with ``keep_scores`` the float32 scores — of images predicted
    ``tile`` by ``tile``: what ``atrous predict --tile`` writes and ``atrous eval --tile``
    scores.

    Test-time augmentation runs inside each window (:func:`predict_batch` on the window).
    Without augmentation an unpadded U-Net takes the exact overlap-tile path of U-Net §2
    (its valid output, mirror-padded context), under the path's autocast like every other
    window.
    """
    if not isinstance(run, InferencePath):
        run = InferencePath.as_given(run)
    bare = run.model
    if not returns_probabilities(scales, flip) and getattr(bare, "context", 0) > 0:
        with run.autocast(images.device):
            labels, scores = tiled_predict(bare, images, tile=tile, batch_size=batch_size, keep_scores=keep_scores)
        return labels, None if scores is None else scores.float()

    def window_scores(windows: torch.Tensor) -> torch.Tensor:
        return predict_batch(run, windows, output_stride=1, scales=scales, flip=flip)

    return tiled_predict(
        window_scores, images, tile=tile, overlap=overlap, batch_size=batch_size, keep_scores=keep_scores
    )
