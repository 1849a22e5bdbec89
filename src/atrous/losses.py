"""Pixel-wise losses for semantic segmentation, and the wrapper that adds the auxiliary head.

Every loss takes logits (B, C, H, W) and integer targets (B, H, W), skips pixels labelled
``ignore_index`` (their logits get exactly zero gradient), computes in float32 whatever
the input dtype (bf16 autocast included), and returns 0 — still attached to the graph —
when a batch has no labelled pixel, where a plain mean would give NaN.

* :class:`CrossEntropy` — softmax cross-entropy with optional class weights.
* :class:`OHEMCrossEntropy` — cross-entropy over the hard pixels only (bootstrapping).
* :class:`DiceLoss` — soft multi-class Dice (V-Net).
* :class:`FocalLoss` — cross-entropy down-weighting easy pixels (RetinaNet).
* :class:`LovaszSoftmaxLoss` — a convex surrogate of 1 − IoU (Berman et al. 2018).
* :class:`WeightedCrossEntropy` — cross-entropy with a weight per pixel (U-Net's weight map).
* :class:`CombinedLoss` — a weighted sum of the above (``"ce+dice"``, ``"ce+lovasz"``).
* :class:`SegmentationLoss` — applies one of them to a model's ``out`` and ``aux`` outputs.
* :func:`build_loss` — all of it by name, for configs and the CLI.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from .data.constants import IGNORE_INDEX
from .utils.registry import Registry, did_you_mean


def check_logits_and_target(logits: torch.Tensor, target: torch.Tensor, ignore_index: int) -> None:
    """Raise a clear error unless ``logits`` is float (B, C, H, W) and ``target`` its (B, H, W) labels.

    Target values must lie in ``0..C-1`` or equal ``ignore_index``. On a GPU this check
    reads one boolean back to the host (a sync); an out-of-range label would otherwise be
    a device-side assert that kills the CUDA context, or silently wrong.
    """
    if not isinstance(logits, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise TypeError(
            f"loss: logits and target must be tensors, got {type(logits).__name__} and {type(target).__name__}"
        )
    if logits.ndim != 4 or not logits.is_floating_point():
        raise ValueError(
            f"loss: logits must be a float (B, C, H, W) tensor, "
            f"got shape {tuple(logits.shape)} and dtype {logits.dtype}"
        )
    if target.is_floating_point() or target.is_complex() or target.dtype == torch.bool:
        raise ValueError(f"loss: target must hold integer labels, got dtype {target.dtype}")
    if target.ndim != 3 or target.shape[0] != logits.shape[0] or target.shape[1:] != logits.shape[2:]:
        raise ValueError(
            f"loss: target shape {tuple(target.shape)} does not match logits shape {tuple(logits.shape)} "
            f"(expected target (B, H, W) for logits (B, C, H, W))"
        )
    num_classes = logits.shape[1]
    bad = ((target < 0) | (target >= num_classes)) & (target != ignore_index)
    if bool(bad.any()):
        values = target[bad].unique().tolist()
        shown = ", ".join(str(v) for v in values[:10]) + (f", ... ({len(values)} distinct)" if len(values) > 10 else "")
        raise ValueError(
            f"loss: target has labels {{{shown}}}; expected 0..{num_classes - 1} or ignore_index={ignore_index}"
        )


def _real(value: Any) -> float | None:
    """``value`` as a float when it is a real number, else ``None``.

    Strings are refused although ``float("0.5")`` works: an option written as text is a
    mistake to report (YAML reads ``thresh: abc`` as text), not a number to guess.
    """
    if value is None or isinstance(value, (bool, str, bytes)):
        return None
    try:
        return float(value)
    except (TypeError, ValueError, RuntimeError):  # RuntimeError: a tensor of several numbers
        return None


def _non_negative(value: Any) -> bool:
    x = _real(value)
    return x is not None and math.isfinite(x) and x >= 0


def as_class_weights(weight: Sequence[float] | torch.Tensor | None, name: str = "weight") -> torch.Tensor | None:
    """Validate per-class weights: one finite, non-negative number per class, not all zero."""
    if weight is None:
        return None
    w = torch.as_tensor(weight, dtype=torch.float32).detach().clone()
    if w.ndim != 1 or w.numel() == 0:
        raise ValueError(f"{name} must be a 1-D sequence with one number per class, got shape {tuple(w.shape)}")
    if not torch.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{name} must be finite and non-negative, got {w.tolist()}")
    if not (w > 0).any():
        raise ValueError(f"{name} must have at least one positive entry, got {w.tolist()}")
    return w


class _PixelLoss(nn.Module):
    """Shared plumbing: ignore_index, optional class weights, input checks, float32."""

    def __init__(self, *, ignore_index: int, weight: Sequence[float] | torch.Tensor | None, weight_name: str) -> None:
        super().__init__()
        if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
            raise ValueError(f"ignore_index must be an integer, got {ignore_index!r}")
        self.ignore_index = ignore_index
        self._weight_name = weight_name
        # Not persistent: a loss's weights are configuration, not learned state, and a
        # model checkpoint should not change keys because of them.
        self.register_buffer("weight", as_class_weights(weight, weight_name), persistent=False)

    def _prepare(
        self, logits: torch.Tensor, target: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Checked float32 logits, int64 target with ignored pixels set to 0, the valid mask, weights."""
        check_logits_and_target(logits, target, self.ignore_index)
        weight = self.weight
        if weight is not None:
            if weight.numel() != logits.shape[1]:
                raise ValueError(
                    f"{self._weight_name} has {weight.numel()} entries but logits have {logits.shape[1]} classes"
                )
            weight = weight.to(logits.device)
        target = target.long()
        valid = target != self.ignore_index
        # Ignored pixels point at class 0 so gathers stay in range; ``valid`` masks them out.
        return logits.float(), torch.where(valid, target, 0), valid, weight

    def extra_repr(self) -> str:
        parts = [f"ignore_index={self.ignore_index}"]
        if self.weight is not None:
            parts.append(f"{self._weight_name}={[round(w, 4) for w in self.weight.tolist()]}")
        return ", ".join(parts)


def _check_class_selection(classes: Any) -> None:
    """Dice's and Lovász's ``classes``: average over the classes ``"present"`` in the labels, or ``"all"``."""
    if classes not in ("present", "all"):
        raise ValueError(f"classes must be 'present' or 'all', got {classes!r}")


def _weighted_mean(loss: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ w·loss / Σ w, and 0 (with a graph) when Σ w = 0 — no NaN, no host sync."""
    return (loss * weights).sum() / weights.sum().clamp_min(torch.finfo(torch.float32).tiny)


def _pixel_weights(target: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """The weight of each pixel: its class weight (or 1), and 0 where ignored."""
    w = weight[target] if weight is not None else torch.ones_like(target, dtype=torch.float32)
    return torch.where(valid, w, 0.0)


class CrossEntropy(_PixelLoss):
    """Softmax cross-entropy averaged over labelled pixels: FCN's per-pixel multinomial logistic loss.

    With class weights the average is weighted — ``Σ w[y]·nll / Σ w[y]`` — exactly as
    ``torch.nn.functional.cross_entropy(weight=..., reduction="mean")``.

    Args:
        weight: optional per-class weights (length C).
        ignore_index: target label whose pixels are skipped.
    """

    def __init__(
        self, weight: Sequence[float] | torch.Tensor | None = None, *, ignore_index: int = IGNORE_INDEX
    ) -> None:
        super().__init__(ignore_index=ignore_index, weight=weight, weight_name="weight")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target, valid, weight = self._prepare(logits, target)
        with torch.autocast(logits.device.type, enabled=False):
            nll = F.cross_entropy(logits, target, reduction="none")  # (B, H, W)
            return _weighted_mean(torch.where(valid, nll, 0.0), _pixel_weights(target, valid, weight))


class OHEMCrossEntropy(_PixelLoss):
    """Cross-entropy over hard pixels only: online hard example mining (bootstrapping).

    A pixel is kept when the predicted probability of its true class is below
    ``thresh``; when fewer than ``min_kept`` pixels are that hard, the ``min_kept``
    hardest labelled pixels (lowest probability) are kept instead. The loss is the
    (class-weighted) mean over kept pixels. This is the threshold + minimum-count rule of
    PSPNet's / ICNet's released training code, itself the "bootstrapped" cross-entropy of
    Wu et al. 2016 ("Bridging category-level and instance-level semantic image
    segmentation": train on the K worst-predicted pixels only). The selection is not
    differentiated through.

    ``min_kept`` counts pixels over the whole batch (as HRNet's ``OhemCrossEntropy``;
    mmsegmentation instead multiplies it by the batch size). Ties at the ``min_kept``-th
    probability are all kept, so slightly more than ``min_kept`` pixels may be. With
    ``thresh=1`` and ``min_kept`` at least the number of labelled pixels it is plain
    cross-entropy.

    Args:
        thresh: probability below which a pixel counts as hard, in (0, 1].
        min_kept: least number of pixels to keep per batch (fewer if fewer are labelled).
        ignore_index: target label whose pixels are skipped.
        weight: optional per-class weights (length C).
    """

    def __init__(
        self,
        thresh: float = 0.7,
        min_kept: int = 100_000,
        *,
        ignore_index: int = IGNORE_INDEX,
        weight: Sequence[float] | torch.Tensor | None = None,
    ) -> None:
        super().__init__(ignore_index=ignore_index, weight=weight, weight_name="weight")
        p = _real(thresh)
        if p is None or not 0.0 < p <= 1.0:
            raise ValueError(f"thresh must be a number in (0, 1], got {thresh!r}")
        if isinstance(min_kept, bool) or not isinstance(min_kept, int) or min_kept < 0:
            raise ValueError(f"min_kept must be an integer >= 0, got {min_kept!r}")
        self.thresh = float(thresh)
        self.min_kept = min_kept

    def extra_repr(self) -> str:
        return f"thresh={self.thresh}, min_kept={self.min_kept}, " + super().extra_repr()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target, valid, weight = self._prepare(logits, target)
        with torch.autocast(logits.device.type, enabled=False):
            nll = F.cross_entropy(logits, target, reduction="none")  # (B, H, W)
            kept, _ = self._hard_pixels(nll, valid)
            return _weighted_mean(torch.where(kept, nll, 0.0), _pixel_weights(target, kept, weight))

    def select(self, logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The kept-pixel mask (B, H, W) and the true-class probability (B, H, W) it was chosen by.

        Ignored pixels have probability ``inf`` and are never kept.
        """
        logits, target, valid, _ = self._prepare(logits, target)
        with torch.autocast(logits.device.type, enabled=False):
            return self._hard_pixels(F.cross_entropy(logits, target, reduction="none"), valid)

    @torch.no_grad()
    def _hard_pixels(self, nll: torch.Tensor, valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # The unweighted per-pixel loss is −log p(true class): no second softmax needed.
        # Ignored pixels get probability inf, so they sort after every labelled one.
        prob = torch.where(valid, torch.exp(-nll), math.inf)
        kept = prob < self.thresh
        k = min(self.min_kept, prob.numel())
        if k > 0:
            # The k-th smallest is found on the device (no sync); if it lands on an ignored
            # pixel (fewer than k labelled) it is inf and every labelled pixel is kept.
            kth = prob.flatten().kthvalue(k).values
            kept |= prob <= kth
        return kept & valid, prob


class DiceLoss(_PixelLoss):
    """Soft multi-class Dice loss on softmax probabilities (V-Net, Milletari et al. 2016).

    For each class c, over all labelled pixels of the batch pooled together,
    ``dice_c = (2 Σ p·g + smooth) / (Σ p + Σ g + smooth)`` with ``p`` the softmax
    probability of c and ``g`` the one-hot target; the loss is ``1 − mean_c dice_c``, so
    it lies in [0, 1] and is 0 for a perfect one-hot prediction. Ignored pixels are
    removed from both ``p`` and ``g``. V-Net squares the denominator terms
    (``Σ p² + Σ g²``); ``squared=True`` does so.

    Which classes enter the mean (``classes``):

    * ``"present"`` (default): only classes with at least one labelled pixel in the batch.
      A class the batch does not contain would otherwise score ~1 by the smoothing term
      alone and dilute the loss; false positives on it still cost, through the Dice of
      the classes they were taken from.
    * ``"all"``: every class. An absent class then scores ``smooth / (Σ p + smooth)``,
      which pushes its probability towards 0 everywhere.

    When a batch has no labelled pixel the loss is 0.

    Args:
        smooth: added to numerator and denominator (keeps empty classes finite).
        ignore_index: target label whose pixels are skipped.
        classes: ``"present"`` or ``"all"``, see above.
        squared: square the denominator terms, as in V-Net.
    """

    def __init__(
        self,
        smooth: float = 1.0,
        *,
        ignore_index: int = IGNORE_INDEX,
        classes: Literal["present", "all"] = "present",
        squared: bool = False,
    ) -> None:
        super().__init__(ignore_index=ignore_index, weight=None, weight_name="weight")
        if not _non_negative(smooth):
            raise ValueError(f"smooth must be a finite number >= 0, got {smooth!r}")
        _check_class_selection(classes)
        self.smooth = float(smooth)
        self.classes = classes
        self.squared = bool(squared)

    def extra_repr(self) -> str:
        return f"smooth={self.smooth}, classes={self.classes!r}, squared={self.squared}, " + super().extra_repr()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target, valid, _ = self._prepare(logits, target)
        with torch.autocast(logits.device.type, enabled=False):
            mask = valid.unsqueeze(1)  # (B, 1, H, W)
            prob = torch.where(mask, logits.softmax(dim=1), 0.0)  # (B, C, H, W)
            # One-hot in float by scatter (F.one_hot would make an int64 copy 2× the size),
            # zero at ignored pixels.
            one_hot = torch.zeros_like(prob).scatter_(1, target.unsqueeze(1), mask.float())
            dims = (0, 2, 3)
            intersection = (prob * one_hot).sum(dims)  # (C,)
            if self.squared:
                cardinality = (prob * prob).sum(dims) + one_hot.sum(dims)
            else:
                cardinality = prob.sum(dims) + one_hot.sum(dims)
            # smooth = 0 and an empty class would be 0/0; such a class is excluded below
            # ("present") or scores 1 ("all"), never NaN.
            dice = (2 * intersection + self.smooth) / (cardinality + self.smooth).clamp_min(
                torch.finfo(torch.float32).tiny
            )
            dice = torch.where(cardinality + self.smooth > 0, dice, 1.0)
            # "all": with no labelled pixel every class scores 1, so the loss is 0 then too.
            counted = (one_hot.sum(dims) > 0).float() if self.classes == "present" else torch.ones_like(dice)
            return ((1 - dice) * counted).sum() / counted.sum().clamp_min(1.0)


class FocalLoss(_PixelLoss):
    """Focal loss ``−α_y (1 − p_y)^γ log p_y`` (RetinaNet, Lin et al. 2017, §3.2).

    ``(1 − p_y)^γ`` shrinks the loss of well-classified pixels; with ``γ = 0`` and no
    ``alpha`` this is exactly cross-entropy. For more than two classes ``alpha`` is a
    per-class weight (length C) rather than the paper's binary α; the mean is weighted by
    it like PyTorch's weighted cross-entropy (``Σ α_y·fl / Σ α_y``), so ``γ = 0`` equals
    :class:`CrossEntropy` with ``weight=alpha``. (RetinaNet divides by the number of
    positive anchors instead; with ``alpha=None`` both are the mean over labelled pixels.)

    Args:
        gamma: focusing parameter, >= 0 (the paper uses 2).
        alpha: optional per-class weights (length C).
        ignore_index: target label whose pixels are skipped.
    """

    def __init__(
        self,
        gamma: float = 2.0,
        alpha: Sequence[float] | torch.Tensor | None = None,
        *,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(ignore_index=ignore_index, weight=alpha, weight_name="alpha")
        if not _non_negative(gamma):
            raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
        self.gamma = float(gamma)

    @property
    def alpha(self) -> torch.Tensor | None:
        return self.weight

    def extra_repr(self) -> str:
        return f"gamma={self.gamma}, " + super().extra_repr()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target, valid, alpha = self._prepare(logits, target)
        with torch.autocast(logits.device.type, enabled=False):
            log_p = logits.log_softmax(dim=1).gather(1, target.unsqueeze(1)).squeeze(1)  # (B, H, W)
            loss = -log_p
            if self.gamma > 0:
                # 1 − p by expm1 keeps precision near p = 1; the floor keeps the gradient of
                # x^γ finite at x = 0 when γ < 1.
                one_minus_p = (-torch.expm1(log_p)).clamp_min(torch.finfo(torch.float32).eps)
                loss = one_minus_p**self.gamma * loss
            return _weighted_mean(torch.where(valid, loss, 0.0), _pixel_weights(target, valid, alpha))


class LovaszSoftmaxLoss(_PixelLoss):
    """Lovász-Softmax: a convex surrogate of the Jaccard loss ``1 − IoU`` (Berman, Rannen Triki &
    Blaschko, CVPR 2018).

    For each class ``c`` the pixel errors ``m_i = |1[y_i = c] − p_i(c)|`` are sorted in
    decreasing order and weighted by the increments of the Jaccard loss of the growing set of
    mispredicted pixels, ``Δ(M) = |M| / |F_c ∪ M|`` (§3.1, eq. 4): the Lovász extension of
    ``Δ`` (eq. 8–9, Algorithm 1). On hard predictions (probabilities 0 or 1) it *is* ``1 −
    IoU`` of the class, and it is piecewise linear in the probabilities, so it optimises the
    overlap the metric counts rather than per-pixel likelihood. The paper fine-tunes networks
    first trained with cross-entropy; ``"ce+lovasz"`` adds the two from the start.

    Args:
        classes: ``"present"`` averages over the classes present in the labels (the
            reference code's default), ``"all"`` over every class (an absent class then
            costs its largest error).
        per_image: one loss per image, averaged, so that every image's IoU counts alike;
            else one over the whole batch, which is closer to a dataset-level IoU.
        ignore_index: target label whose pixels are skipped (zero error, so they sort last
            and add nothing).
    """

    def __init__(
        self,
        *,
        classes: Literal["present", "all"] = "present",
        per_image: bool = False,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(ignore_index=ignore_index, weight=None, weight_name="weight")
        _check_class_selection(classes)
        if not isinstance(per_image, bool):
            raise ValueError(f"per_image must be true or false, got {per_image!r}")
        self.classes = classes
        self.per_image = per_image

    def extra_repr(self) -> str:
        return f"classes={self.classes!r}, per_image={self.per_image}, " + super().extra_repr()

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logits, target, valid, _ = self._prepare(logits, target)
        with torch.autocast(logits.device.type, enabled=False):
            b, c = logits.shape[:2]
            groups = b if self.per_image else 1
            prob = logits.softmax(dim=1).movedim(1, -1).reshape(groups, -1, c)  # (G, N, C)
            keep = valid.reshape(groups, -1, 1)
            fg = torch.zeros_like(prob).scatter_(2, target.reshape(groups, -1, 1), keep.float())
            # An ignored pixel gets error 0 and fg 0: it sorts after every pixel with an error,
            # and the increments at and after it multiply errors of 0.
            errors = torch.where(keep, (fg - prob).abs(), 0.0)
            errors, order = errors.sort(dim=1, descending=True)
            fg = fg.gather(1, order)
            per_class = (errors * _jaccard_increments(fg)).sum(dim=1)  # (G, C)
            counted = (fg.sum(dim=1) > 0).float() if self.classes == "present" else torch.ones_like(per_class)
            per_group = (per_class * counted).sum(dim=1) / counted.sum(dim=1).clamp_min(1.0)
            return per_group.mean()


def _jaccard_increments(fg_sorted: torch.Tensor) -> torch.Tensor:
    """``Δ(M_i) − Δ(M_{i−1})`` along dim 1, ``M_i`` the first ``i`` pixels, ``Δ(M) = |M| / |F ∪ M|``.

    Written with running sums (Berman et al. 2018, Algorithm 1): with the first ``i`` pixels
    mispredicted, the intersection holds the foreground pixels after them and the union the
    whole foreground plus the background pixels among them.
    """
    total = fg_sorted.sum(dim=1, keepdim=True)
    intersection = total - fg_sorted.cumsum(dim=1)
    union = total + (1.0 - fg_sorted).cumsum(dim=1)
    jaccard = 1.0 - intersection / union  # union >= 1: the whole foreground, or the pixels so far
    return torch.cat([jaccard[:, :1], jaccard[:, 1:] - jaccard[:, :-1]], dim=1)


class WeightedCrossEntropy(_PixelLoss):
    """Cross-entropy with a weight per pixel: U-Net's weighted energy (Ronneberger et al. 2015, §3, eq. 1).

    ``forward(logits, target, pixel_weight)`` returns ``Σ w·nll / Σ w`` over the labelled
    pixels, ``w`` being ``pixel_weight`` (B, H, W) — typically the weight map of
    :func:`~atrous.data.weight_map.unet_weight_map`, which already holds the class
    balancing ``w_c``, so this loss takes no class weights. The paper sums ``w·log p``;
    dividing by ``Σ w`` keeps the loss on the scale of plain cross-entropy (which it
    equals when every weight is 1) whatever the image size or the weights' scale, so
    learning rates carry over. Pixels labelled ``ignore_index`` are skipped whatever their
    weight; a batch whose labelled pixels all weigh 0 gives 0.

    Args:
        ignore_index: target label whose pixels are skipped.
    """

    def __init__(self, *, ignore_index: int = IGNORE_INDEX) -> None:
        super().__init__(ignore_index=ignore_index, weight=None, weight_name="weight")

    def forward(self, logits: torch.Tensor, target: torch.Tensor, pixel_weight: torch.Tensor) -> torch.Tensor:
        logits, target, valid, _ = self._prepare(logits, target)
        if not isinstance(pixel_weight, torch.Tensor):
            raise TypeError(f"loss: pixel_weight must be a tensor, got {type(pixel_weight).__name__}")
        if pixel_weight.shape != target.shape or not pixel_weight.is_floating_point():
            raise ValueError(
                f"loss: pixel_weight must be a float tensor shaped like target {tuple(target.shape)}, "
                f"got shape {tuple(pixel_weight.shape)} and dtype {pixel_weight.dtype}"
            )
        pixel_weight = pixel_weight.to(device=logits.device, dtype=torch.float32)
        # One more host sync, as for the target check: a negative or NaN weight would
        # silently turn the loss into something that is no longer minimised by the truth.
        if not bool((torch.isfinite(pixel_weight) & (pixel_weight >= 0)).all()):
            raise ValueError("loss: pixel_weight must be finite and >= 0")
        with torch.autocast(logits.device.type, enabled=False):
            nll = F.cross_entropy(logits, target, reduction="none")  # (B, H, W)
            return _weighted_mean(torch.where(valid, nll, 0.0), torch.where(valid, pixel_weight, 0.0))


class CombinedLoss(nn.Module):
    """A weighted sum of losses over the same logits and target.

    Args:
        losses: the terms by name, e.g. ``{"ce": CrossEntropy(), "dice": DiceLoss()}``.
        weights: a weight per name (1 for names left out).
    """

    def __init__(self, losses: Mapping[str, nn.Module], weights: Mapping[str, float] | None = None) -> None:
        super().__init__()
        if not losses:
            raise ValueError("CombinedLoss needs at least one loss")
        weights = dict(weights or {})
        unknown = sorted(set(weights) - set(losses))
        if unknown:
            raise ValueError(f"CombinedLoss: weights for {unknown} name no loss; losses are {sorted(losses)}")
        for name, w in weights.items():
            if not _non_negative(w):
                raise ValueError(f"CombinedLoss: weight of {name!r} must be a finite number >= 0, got {w!r}")
        self.losses = nn.ModuleDict(dict(losses))
        self.weights = {name: float(weights.get(name, 1.0)) for name in losses}

    def extra_repr(self) -> str:
        return f"weights={self.weights}"

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(self.weights[name] * loss(logits, target) for name, loss in self.losses.items())  # type: ignore[return-value]


class SegmentationLoss(nn.Module):
    """The training loss of a segmentation model: main output plus weighted auxiliary output.

    ``forward(output, target, *extra)`` takes what an atrous model returns in training —
    logits (B, C, H, W), or ``{"out": logits, "aux": aux_logits}`` when it has an
    auxiliary head — and returns ``criterion(out) + aux_weight · criterion(aux)`` (PSPNet
    weighs the auxiliary loss by 0.4). ``extra`` arguments go to both calls of the
    criterion after the target, e.g. the pixel weights of :class:`WeightedCrossEntropy`.

    After each call :attr:`last_components` holds the parts, detached, as 0-dim tensors:
    ``{"out": ..., "aux": ..., "total": ...}`` (``"aux"`` only when there was one). They
    stay on the device; call ``.item()`` when logging.

    Args:
        criterion: a loss taking ``(logits, target)``.
        aux_weight: weight of the auxiliary loss, >= 0 (0 skips computing it).
    """

    def __init__(self, criterion: nn.Module, aux_weight: float = 0.4) -> None:
        super().__init__()
        if not callable(criterion):
            raise TypeError(f"criterion must be a loss module, got {type(criterion).__name__}")
        if not _non_negative(aux_weight):
            raise ValueError(f"aux_weight must be a finite number >= 0, got {aux_weight!r}")
        self.criterion = criterion
        self.aux_weight = float(aux_weight)
        self.last_components: dict[str, torch.Tensor] = {}

    def extra_repr(self) -> str:
        return f"aux_weight={self.aux_weight}"

    def forward(
        self, output: torch.Tensor | Mapping[str, torch.Tensor], target: torch.Tensor, *extra: torch.Tensor
    ) -> torch.Tensor:
        if isinstance(output, torch.Tensor):
            out, aux = output, None
        elif isinstance(output, Mapping):
            unknown = sorted(set(output) - {"out", "aux"})
            if "out" not in output or unknown:
                raise ValueError(
                    f"SegmentationLoss: a dict output must have key 'out' and optionally 'aux', "
                    f"got keys {sorted(output)}"
                )
            out, aux = output["out"], output.get("aux")
        else:
            raise TypeError(
                f"SegmentationLoss: output must be a tensor or a dict of tensors, got {type(output).__name__}"
            )
        loss = self.criterion(out, target, *extra)
        components = {"out": loss.detach()}
        if aux is not None and self.aux_weight > 0:
            aux_loss = self.criterion(aux, target, *extra)
            components["aux"] = aux_loss.detach()
            loss = loss + self.aux_weight * aux_loss
        components["total"] = loss.detach()
        self.last_components = components
        return loss


def _build_ce(*, ignore_index: int, class_weights: Any) -> nn.Module:
    return CrossEntropy(class_weights, ignore_index=ignore_index)


def _build_ohem(*, ignore_index: int, class_weights: Any, thresh: float = 0.7, min_kept: int = 100_000) -> nn.Module:
    return OHEMCrossEntropy(thresh, min_kept, ignore_index=ignore_index, weight=class_weights)


def _build_dice(
    *,
    ignore_index: int,
    class_weights: Any,
    smooth: float = 1.0,
    classes: Literal["present", "all"] = "present",
    squared: bool = False,
) -> nn.Module:
    if class_weights is not None:
        raise ValueError("build_loss('dice'): Dice takes no class_weights (use 'ce+dice' to weight the CE term)")
    return DiceLoss(smooth, ignore_index=ignore_index, classes=classes, squared=squared)


def _build_focal(*, ignore_index: int, class_weights: Any, gamma: float = 2.0) -> nn.Module:
    # class_weights are focal loss's α (per-class weights).
    return FocalLoss(gamma, class_weights, ignore_index=ignore_index)


def _build_ce_dice(
    *,
    ignore_index: int,
    class_weights: Any,
    dice_weight: float = 1.0,
    smooth: float = 1.0,
    classes: Literal["present", "all"] = "present",
    squared: bool = False,
) -> nn.Module:
    return CombinedLoss(
        {
            "ce": CrossEntropy(class_weights, ignore_index=ignore_index),
            "dice": DiceLoss(smooth, ignore_index=ignore_index, classes=classes, squared=squared),
        },
        {"dice": dice_weight},
    )


def _build_lovasz(
    *, ignore_index: int, class_weights: Any, classes: Literal["present", "all"] = "present", per_image: bool = False
) -> nn.Module:
    if class_weights is not None:
        raise ValueError(
            "build_loss('lovasz'): Lovász-Softmax takes no class_weights (use 'ce+lovasz' to weight the CE term)"
        )
    return LovaszSoftmaxLoss(classes=classes, per_image=per_image, ignore_index=ignore_index)


def _build_ce_lovasz(
    *,
    ignore_index: int,
    class_weights: Any,
    lovasz_weight: float = 1.0,
    classes: Literal["present", "all"] = "present",
    per_image: bool = False,
) -> nn.Module:
    return CombinedLoss(
        {
            "ce": CrossEntropy(class_weights, ignore_index=ignore_index),
            "lovasz": LovaszSoftmaxLoss(classes=classes, per_image=per_image, ignore_index=ignore_index),
        },
        {"lovasz": lovasz_weight},
    )


# Exact names (``"CE"`` is refused, as in recipes); the hint quotes them, as a YAML value is written.
_LOSSES: Registry[Callable[..., nn.Module]] = Registry("loss", quote=True, cutoff=0.4)
_LOSSES.add("ce", _build_ce)
_LOSSES.add("ohem", _build_ohem)
_LOSSES.add("dice", _build_dice)
_LOSSES.add("focal", _build_focal)
_LOSSES.add("ce+dice", _build_ce_dice)
_LOSSES.add("lovasz", _build_lovasz)
_LOSSES.add("ce+lovasz", _build_ce_lovasz)


def list_losses() -> list[str]:
    """The names :func:`build_loss` accepts."""
    return list(_LOSSES)


_INVALID = object()


def _probability(value: Any) -> Any:
    p = _real(value)
    return p if p is not None and 0.0 < p <= 1.0 else _INVALID


def _count(value: Any) -> Any:
    # A recipe's ``min_kept: 1e5`` is read as the float 100000.0: a whole float is a count.
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else _INVALID
    x = _real(value)
    return int(x) if x is not None and math.isfinite(x) and x >= 0 and x.is_integer() else _INVALID


def _non_negative_number(value: Any) -> Any:
    x = _real(value)
    return x if x is not None and math.isfinite(x) and x >= 0 else _INVALID


def _class_set(value: Any) -> Any:
    return value if isinstance(value, str) and value in ("present", "all") else _INVALID


def _flag(value: Any) -> Any:
    # Only true/false: bool("no") is True, so a string would silently mean the opposite.
    return value if isinstance(value, bool) else _INVALID


# Each loss option: its check (the value to pass, or _INVALID) and what is allowed, in words.
# Shared by every loss that takes the option (smooth is Dice's; classes is Dice's and Lovász's).
_OPTION_RULES: dict[str, tuple[Callable[[Any], Any], str]] = {
    "thresh": (_probability, "a number in (0, 1] (the probability below which a pixel counts as hard)"),
    "min_kept": (_count, "a whole number >= 0 (pixels kept per batch at least)"),
    "smooth": (_non_negative_number, "a finite number >= 0"),
    "gamma": (_non_negative_number, "a finite number >= 0 (0 is plain cross-entropy)"),
    "dice_weight": (_non_negative_number, "a finite number >= 0"),
    "lovasz_weight": (_non_negative_number, "a finite number >= 0"),
    "per_image": (_flag, "true or false"),
    "classes": (_class_set, "'present' or 'all'"),
    "squared": (_flag, "true or false"),
}


def _show(value: Any) -> str:
    return repr(value) if isinstance(value, (str, bytes)) else str(value)


def check_loss_options(name: str, options: Mapping[str, Any]) -> dict[str, Any]:
    """Check a loss's ``options`` (``train.loss_options``) before it is built; return them ready to pass.

    Whole floats become integers where a count is wanted (``min_kept: 1e5`` in YAML is a float).

    Raises:
        ValueError: an unknown loss; an option the loss does not take; a value of the wrong
            type or range. The message names ``train.loss_options.<key>``, the loss, the
            value and what is allowed, in one line.
    """
    builder = _LOSSES.get(name)
    allowed = [p for p in inspect.signature(builder).parameters if p not in ("ignore_index", "class_weights")]
    checked: dict[str, Any] = {}
    for option, value in options.items():
        if option not in allowed:
            hint = did_you_mean(str(option), allowed, n=1, cutoff=0.6, quote=True, lead=" Did you mean ")
            takes = f"it takes {', '.join(allowed)}" if allowed else "it takes none"
            raise ValueError(f"train.loss_options: unknown option {option!r} for loss {name!r}.{hint} ({takes})")
        rule = _OPTION_RULES.get(option)
        if rule is None:  # an option without a rule here: the loss's own constructor checks it
            checked[option] = value
            continue
        convert, what = rule
        result = convert(value)
        if result is _INVALID:
            raise ValueError(f"train.loss_options.{option} must be {what} for loss {name!r}, got {_show(value)}")
        checked[option] = result
    return checked


def build_loss(
    name: str,
    *,
    num_classes: int,
    ignore_index: int = IGNORE_INDEX,
    class_weights: Sequence[float] | torch.Tensor | None = None,
    aux_weight: float = 0.4,
    **options: Any,
) -> SegmentationLoss:
    """Build a training loss by name, wrapped in :class:`SegmentationLoss`.

    Names and their ``options``:

    * ``"ce"`` — :class:`CrossEntropy`; no options.
    * ``"ohem"`` — :class:`OHEMCrossEntropy`; ``thresh=0.7``, ``min_kept=100_000``.
    * ``"dice"`` — :class:`DiceLoss`; ``smooth=1.0``, ``classes="present"``, ``squared=False``
      (no class weights).
    * ``"focal"`` — :class:`FocalLoss`; ``gamma=2.0``; ``class_weights`` become its α.
    * ``"ce+dice"`` — CE + ``dice_weight`` × Dice; ``dice_weight=1.0`` and Dice's options;
      ``class_weights`` weigh the CE term.
    * ``"lovasz"`` — :class:`LovaszSoftmaxLoss`; ``classes="present"``, ``per_image=False``
      (no class weights).
    * ``"ce+lovasz"`` — CE + ``lovasz_weight`` × Lovász-Softmax; ``lovasz_weight=1.0`` and
      its options; ``class_weights`` weigh the CE term.

    Args:
        name: one of the names above.
        num_classes: number of classes; ``class_weights`` must have this many entries.
        ignore_index: target label whose pixels are skipped.
        class_weights: optional per-class weights.
        aux_weight: weight of the auxiliary-head loss.
        **options: the loss's own options, listed above (checked by :func:`check_loss_options`).

    Example::

        loss_fn = build_loss("ohem", num_classes=19, min_kept=50_000)
        loss = loss_fn(model(images), masks)
    """
    builder = _LOSSES.get(name)
    # Before anything is built: a wrong option is one line naming it, not an error from inside a loss.
    options = check_loss_options(name, options)
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 1:
        raise ValueError(f"num_classes must be an integer >= 1, got {num_classes!r}")
    weights = as_class_weights(class_weights, "class_weights")
    if weights is not None and weights.numel() != num_classes:
        raise ValueError(f"class_weights has {weights.numel()} entries for num_classes={num_classes}")
    criterion = builder(ignore_index=ignore_index, class_weights=weights, **options)
    return SegmentationLoss(criterion, aux_weight=aux_weight)
