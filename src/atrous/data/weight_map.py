"""The U-Net loss weight map (Ronneberger et al. 2015, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", §3, eq. 2), and a dataset wrapper that attaches it to each sample.

    w(x) = w_c(x) + w0 · exp(−(d1(x) + d2(x))² / (2σ²))

``w_c`` balances the class frequencies; ``d1`` and ``d2`` are the distances from ``x`` to
the nearest and the second-nearest cell. The second term is large only in the thin gaps
between two touching cells, so the network is made to learn those separation borders.

Choices, where the paper leaves room:

* **Cells.** From an instance mask (``instances=``: 0 = background, each positive id one
  cell), or else from a label mask: every 4-connected region of one non-zero label is a
  cell (label 0 is the background class, the "border" class of the paper's membrane
  data). 4-connectivity keeps two cells apart when the background between them is only a
  diagonal line of pixels, as in the 1-pixel-thick membranes of ISBI 2012.
* **Distances** are Euclidean between pixel centres, to the nearest pixel of a cell: a
  background pixel next to a cell is at distance 1.
* **Where the border term applies.** To background pixels only (not ignored, not inside a
  cell): these are the separating borders the paper wants weighted. Inside a cell ``d1``
  would be 0 and the term would spill over the cells' rims.
* **Cut-off.** ``d1`` and ``d2`` are computed exactly up to ``R = ceil(6σ)`` pixels; where
  the second-nearest cell is farther than that the term is set to 0. Its true value there
  is below ``w0 · exp(−R²/(2σ²)) ≤ w0 · e⁻¹⁸ ≈ 1.5e-8 · w0``, under float32 resolution
  next to ``w_c`` ≈ 1.
* **Cost.** Connected components and distances are ``scipy.ndimage``'s (``label``,
  ``distance_transform_edt``, in C): one transform over the image, and one per cell over
  its bounding box grown by ``R`` (docs/benchmarks.md has the time per crop).
* **Class weights** ``"balanced"``: ``w_c(k) = N / (K · n_k)`` over the ``N`` non-ignored
  pixels, ``n_k`` of class ``k`` and ``K`` classes present, so ``w_c`` averages to 1 over
  the image. They are per image (per augmented crop with :class:`WeightMapDataset`); for
  dataset-wide weights pass a sequence, e.g. from
  :func:`~atrous.data.doctor.median_frequency_weights`.
* **Ignored pixels** (``ignore_index``) weigh 0, are no cell and count in no frequency.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch.utils.data import Dataset

from .constants import IGNORE_INDEX

# The border term is dropped beyond d2 > _CUTOFF_SIGMAS · σ: exp(−6²/2) = e⁻¹⁸ ≈ 1.5e-8.
_CUTOFF_SIGMAS = 6.0
# "No cell within reach" as a squared distance: larger than any real one (R² ≤ 2·(H+W)²
# for images up to ~16k pixels a side) and far from int32 overflow when δ² is added.
_FAR = np.int32(2**30)
_FOUR_CONNECTED = ndimage.generate_binary_structure(2, 1)


def _as_label_array(value: Any, name: str) -> np.ndarray:
    """A 2-D integer numpy array from a numpy array or tensor (bool becomes 0/1), or a clear error."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{name} must be a numpy array or a torch tensor, got {type(value).__name__}")
    if value.ndim != 2:
        raise ValueError(f"{name} must be 2-D (H, W), got shape {value.shape}")
    if value.dtype == np.bool_:
        return value.astype(np.int64)
    if value.dtype.kind not in "ui":
        raise ValueError(f"{name} must hold integers, got dtype {value.dtype}")
    return value.astype(np.int64, copy=False)


def connected_components(labels: np.ndarray) -> np.ndarray:
    """Number the 4-connected regions of equal non-zero value: int32 (H, W), 0 where ``labels`` is 0, else 1..n.

    Regions are numbered in raster order of their first pixel. ``scipy.ndimage.label``
    (C) labels each non-zero value's pixels; the numbers are then put in raster order
    across values.
    """
    labels = np.asarray(labels)
    out = np.zeros(labels.shape, dtype=np.int32)
    values = np.unique(labels)
    values = values[values != 0]
    count = 0
    for value in values:
        ids, found = ndimage.label(labels == value, structure=_FOUR_CONNECTED, output=np.int32)
        inside = ids > 0
        out[inside] = ids[inside] + count
        count += found
    if len(values) > 1:
        # ndimage numbers each value's regions in raster order; interleave the values' numbers.
        ids, first = np.unique(out.ravel(), return_index=True)
        first, ids = first[ids > 0], ids[ids > 0]
        order = np.zeros(count + 1, dtype=np.int32)
        order[ids[np.argsort(first)]] = np.arange(1, ids.size + 1, dtype=np.int32)
        out = order[out]
    return out


def two_nearest_cells(cells: np.ndarray, radius: int) -> tuple[np.ndarray, np.ndarray]:
    """Squared Euclidean distances (int32 (H, W)) from each pixel to its nearest and second-nearest cell.

    ``cells`` numbers the cells (0 = no cell). ``d1`` is exact everywhere; ``d2`` is exact
    wherever it is at most ``radius``; beyond it the value is only known to exceed
    ``radius²`` (it may be any larger number, ``2**30`` when no second cell was seen).

    Both come from ``scipy.ndimage.distance_transform_edt``'s feature transform (the exact
    Euclidean distance transform, in C), which gives each pixel its nearest cell pixel:

    1. over the whole image, to any cell: ``d1`` and the nearest cell's number;
    2. for each cell, inside its bounding box grown by ``radius``: the distance to that
       cell, kept as ``d2`` where it is smaller and the cell is not the pixel's nearest.
       A pixel within ``radius`` of a cell lies in that cell's window, so ``d2`` is exact
       up to ``radius``; the cost is the windows' area, not the image's times the cells.
    """
    height, width = cells.shape
    cells = cells.astype(np.int32, copy=False)
    d2 = np.full((height, width), _FAR, dtype=np.int32)
    if not cells.any():
        return d2.copy(), d2
    d1, nearest = _nearest_cell(cells == 0, cells)
    for cell, box in enumerate(ndimage.find_objects(cells), start=1):
        if box is None:  # a number no pixel carries
            continue
        rows = slice(max(box[0].start - radius, 0), min(box[0].stop + radius, height))
        cols = slice(max(box[1].start - radius, 0), min(box[1].stop + radius, width))
        window = cells[rows, cols]
        distance, _ = _nearest_cell(window != cell, window)
        distance[nearest[rows, cols] == cell] = _FAR  # the nearest cell is not the second
        np.minimum(d2[rows, cols], distance, out=d2[rows, cols])
    return d1, d2


def _nearest_cell(outside: np.ndarray, cells: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Squared distance (int32) from each pixel to the nearest pixel not ``outside``, and that pixel's cell."""
    rows, cols = ndimage.distance_transform_edt(outside, return_distances=False, return_indices=True)
    y, x = np.indices(outside.shape, sparse=True)
    squared = (rows - y) ** 2 + (cols - x) ** 2
    return squared.astype(np.int32), cells[rows, cols]


def _compact(instances: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Instance ids with ignored pixels set to 0, renumbered 1..n only when they would overflow int32."""
    cells = np.where(valid, instances, 0)
    if cells.max(initial=0) >= np.iinfo(np.int32).max:
        # The leading 0 keeps background at 0 even in an image with no background.
        cells = np.unique(np.concatenate([[0], cells.ravel()]), return_inverse=True)[1][1:].reshape(cells.shape)
    return cells


def _check_number(value: Any, name: str, *, positive: bool) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number, got {value!r}")
    if value < 0 or (positive and value == 0):
        raise ValueError(f"{name} must be {'> 0' if positive else '>= 0'}, got {value!r}")
    return float(value)


def _class_weight_map(labels: np.ndarray, valid: np.ndarray, class_weights: str | Sequence[float] | None) -> np.ndarray:
    """``w_c`` as float64 (H, W); undefined (left 1) at ignored pixels, which the caller zeroes."""
    if class_weights is None:
        return np.ones(labels.shape)
    safe = np.where(valid, labels, 0)
    if isinstance(class_weights, str):
        if class_weights != "balanced":
            raise ValueError(f"class_weights must be 'balanced', None or a sequence, got {class_weights!r}")
        counts = np.bincount(safe[valid].ravel(), minlength=1).astype(np.float64)
        present = counts > 0
        if not present.any():
            return np.ones(labels.shape)
        table = np.zeros_like(counts)
        table[present] = counts.sum() / (present.sum() * counts[present])
        return table[safe]
    table = np.asarray(class_weights, dtype=np.float64)
    if table.ndim != 1 or table.size == 0 or not np.isfinite(table).all() or (table < 0).any():
        raise ValueError(
            f"class_weights must be 'balanced', None or a 1-D sequence of finite numbers >= 0, got {class_weights!r}"
        )
    top = int(safe.max(initial=0))
    if top >= table.size:
        raise ValueError(f"class_weights has {table.size} entries but the mask has label {top}")
    return table[safe]


def unet_weight_map(
    mask: np.ndarray | torch.Tensor | None,
    *,
    w0: float = 10.0,
    sigma: float = 5.0,
    class_weights: str | Sequence[float] | None = "balanced",
    instances: np.ndarray | torch.Tensor | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> np.ndarray:
    """The U-Net loss weight map of a mask (§3, eq. 2): float32 (H, W). See the module docstring for the choices.

    Args:
        mask: label mask (H, W) of integer classes, 0 = background, ``ignore_index`` =
            unlabelled. May be ``None`` when ``instances`` is given; the classes are then
            background (0) and cell (1).
        w0: weight of the border term (the paper: 10).
        sigma: its width σ in pixels, > 0 (the paper: about 5).
        class_weights: ``w_c``: ``"balanced"`` (inverse frequency, mean 1 over the
            labelled pixels), ``None`` (1 everywhere) or one weight per class.
        instances: optional instance mask (H, W), 0 = background, each positive id one
            cell. Without it the cells are the 4-connected regions of each non-zero label
            of ``mask``.
        ignore_index: label of unlabelled pixels in ``mask``; they get weight 0.

    Returns:
        ``w_c + w0 · exp(−(d1 + d2)² / (2σ²))`` with the border term on background
        pixels only, and 0 at ignored pixels.
    """
    w0 = _check_number(w0, "w0", positive=False)
    sigma = _check_number(sigma, "sigma", positive=True)
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, int):
        raise ValueError(f"ignore_index must be an integer, got {ignore_index!r}")
    if instances is not None:
        instances = _as_label_array(instances, "instances")
        if (instances < 0).any():
            raise ValueError(f"instances must be >= 0 (0 = background), got min {int(instances.min())}")
    if mask is None:
        if instances is None:
            raise ValueError("unet_weight_map needs a mask, instances, or both; got neither")
        labels = (instances > 0).astype(np.int64)
        valid = np.ones(labels.shape, dtype=bool)
    else:
        labels = _as_label_array(mask, "mask")
        valid = labels != ignore_index
        if (labels[valid] < 0).any():
            raise ValueError(f"mask has negative labels other than ignore_index={ignore_index}")
        if instances is not None and instances.shape != labels.shape:
            raise ValueError(f"instances shape {instances.shape} does not match mask shape {labels.shape}")

    weight = _class_weight_map(labels, valid, class_weights)
    cells = connected_components(np.where(valid, labels, 0)) if instances is None else _compact(instances, valid)
    background = valid & (cells == 0)
    if w0 > 0 and background.any() and cells.any():
        radius = math.ceil(_CUTOFF_SIGMAS * sigma)
        d1_sq, d2_sq = two_nearest_cells(cells, radius)
        near = background & (d2_sq <= radius * radius)
        d_sum = np.sqrt(d1_sq[near]) + np.sqrt(d2_sq[near])
        weight[near] += w0 * np.exp(-(d_sum**2) / (2 * sigma * sigma))
    return np.where(valid, weight, 0.0).astype(np.float32)


_WEIGHT_MAP_OPTIONS = ("w0", "sigma", "class_weights", "ignore_index")


class WeightMapDataset(Dataset):
    """Wrap a dataset of ``(image, mask)`` so it returns ``(image, mask, weight)``, weight by :func:`unet_weight_map`.

    The weight is computed from the mask the wrapped dataset returns, so wrap the
    *augmented* dataset (e.g. ``WeightMapDataset(KeyedAugmentation(...))``): the borders
    then follow the deformed, cropped mask. Indices pass through unchanged, so keyed
    indices larger than ``len`` work as they do for the wrapped dataset. ``weight`` is
    float32 (H, W), 0 where the mask is ``ignore_index``; the default collate stacks it to
    (B, H, W) for :class:`~atrous.losses.WeightedCrossEntropy`.

    Args:
        dataset: yields ``(image, mask int (H, W))``.
        **weight_map_kwargs: ``w0``, ``sigma``, ``class_weights``, ``ignore_index`` of
            :func:`unet_weight_map`.
    """

    def __init__(self, dataset: Dataset, **weight_map_kwargs: Any) -> None:
        unknown = sorted(set(weight_map_kwargs) - set(_WEIGHT_MAP_OPTIONS))
        if unknown:
            raise ValueError(f"WeightMapDataset: unknown options {unknown}; it takes {', '.join(_WEIGHT_MAP_OPTIONS)}")
        # Fail now, not in a worker at the first sample: run the options on a tiny mask.
        unet_weight_map(np.zeros((2, 2), dtype=np.int64), **weight_map_kwargs)
        self.dataset = dataset
        self.weight_map_kwargs = dict(weight_map_kwargs)

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> tuple[Any, Any, torch.Tensor]:
        image, mask = self.dataset[index]
        weight = torch.from_numpy(unet_weight_map(mask, **self.weight_map_kwargs))
        return image, mask, weight

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.weight_map_kwargs.items())
        return f"WeightMapDataset({self.dataset!r}{', ' if options else ''}{options})"
