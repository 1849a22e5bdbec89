"""How many of an atrous filter's taps read real features: DeepLab v3's Fig. 4.

DeepLab v3 (Chen et al. 2017) §3.3: "as the sampling rate becomes larger, the number of
valid filter weights (i.e., the weights that are applied to the valid feature region,
instead of padded zeros) becomes smaller … In the extreme case where the rate value is
close to the feature map size, the 3×3 filter, instead of capturing the whole image
context, degenerates to a simple 1×1 filter since only the center filter weight is
effective." Fig. 4 plots, for a 65×65 feature map and a 3×3 filter with zero padding,
the normalised count of filter applications with 1, 4 and 9 valid weights against the
rate.

Here that count is exact. Along one axis, output position *p* of a k-tap filter with
rate *r*, stride *s* and padding *q* reads cells ``p·s − q + r·t`` (t = 0 … k−1); a tap is
valid when its cell is inside the map. The taps of a 2-D filter are the product of the two
axes' taps, so a position's count of valid weights is the product of its row's and its
column's counts, and the share of positions with each count follows from the two axes'
histograms (:func:`tap_shares`) — no 2-D array needed.

:func:`placements` puts each dilated convolution a model runs (found by the walk,
:mod:`.tracer`) at the feature size its input has, with the share of positions that see
all k² taps and the share that see exactly one (the centre, for 'same' padding: the
filter is a 1×1 there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .tracer import Trace

PAPER_SIZE = 65  # Fig. 4's feature map, 65×65
PAPER_KERNEL = 3


def valid_taps(size: int, kernel: int, rate: int | np.ndarray, *, padding=None, stride: int = 1) -> np.ndarray:
    """Valid taps of each output position along one axis.

    ``rate`` may be an array of rates: the result then has one row per rate (for 'same'
    padding, ``padding=None``, every row has ``size`` positions). ``padding`` defaults to
    ``rate·(kernel − 1)/2``, the 'same' padding DeepLab uses.
    """
    rates = np.atleast_1d(np.asarray(rate, dtype=np.int64))
    pad = rates * (kernel - 1) // 2 if padding is None else np.broadcast_to(np.asarray(padding), rates.shape)
    n_out = (size + 2 * pad - rates * (kernel - 1) - 1) // stride + 1
    if len(set(n_out.tolist())) != 1:
        raise ValueError("valid_taps: rates with different output sizes; pass one rate at a time")
    p = np.arange(int(n_out[0]))[None, :, None] * stride - pad[:, None, None]
    cells = p + rates[:, None, None] * np.arange(kernel)[None, None, :]  # (rates, positions, taps)
    counts = ((cells >= 0) & (cells < size)).sum(axis=2)
    return counts[0] if np.ndim(rate) == 0 else counts


def tap_shares(rows: np.ndarray, cols: np.ndarray, kernel_h: int, kernel_w: int | None = None) -> dict[int, float]:
    """Share of 2-D positions by their number of valid taps, from the per-axis counts
    (``rows``: each output row's count, ``cols``: each column's). Exact rational shares
    as floats; counts that never occur are left out."""
    kernel_w = kernel_h if kernel_w is None else kernel_w
    hist_h = np.bincount(rows, minlength=kernel_h + 1)
    hist_w = np.bincount(cols, minlength=kernel_w + 1)
    joint = np.outer(hist_h, hist_w)  # joint[a, b]: positions with a valid rows-taps and b column-taps
    total = int(joint.sum())
    shares: dict[int, int] = {}
    for a, b in zip(*np.nonzero(joint), strict=True):
        shares[int(a * b)] = shares.get(int(a * b), 0) + int(joint[a, b])
    return {count: n / total for count, n in sorted(shares.items())}


@dataclass(frozen=True)
class ValidWeightCurve:
    """Fig. 4: for each rate, the share of positions with each count of valid weights."""

    size: int
    kernel: int
    rates: np.ndarray  # (R,)
    counts: tuple[int, ...]  # the valid-weight counts that occur
    shares: np.ndarray  # (R, len(counts)), rows sum to 1

    def share(self, count: int) -> np.ndarray:
        """The curve for one count (zeros if it never occurs)."""
        if count not in self.counts:
            return np.zeros(len(self.rates))
        return self.shares[:, self.counts.index(count)]

    def as_dict(self) -> dict:
        return {
            "size": self.size,
            "kernel": self.kernel,
            "rates": self.rates.tolist(),
            "shares": {str(c): self.share(c).tolist() for c in self.counts},
        }


def valid_weight_curve(
    size: int = PAPER_SIZE, kernel: int = PAPER_KERNEL, rates: Sequence[int] | None = None
) -> ValidWeightCurve:
    """The share of positions with each number of valid weights, rate by rate, on a
    ``size``×``size`` map with 'same' zero padding (default: rates 1 … ``size``, Fig. 4)."""
    if size < 1 or kernel < 1:
        raise ValueError(f"valid_weight_curve: size and kernel must be >= 1, got {size}, {kernel}")
    rate_list = np.arange(1, size + 1) if rates is None else np.asarray(list(rates), dtype=np.int64)
    if len(rate_list) == 0 or (rate_list < 1).any():
        raise ValueError("valid_weight_curve: rates must be >= 1")
    per_axis = valid_taps(size, kernel, rate_list)  # (R, size): one map axis, every rate at once
    hist = np.stack([np.bincount(row, minlength=kernel + 1) for row in per_axis])  # (R, kernel + 1)
    joint = hist[:, :, None] * hist[:, None, :]  # (R, a, b): positions with a × b valid taps
    products = np.outer(np.arange(kernel + 1), np.arange(kernel + 1))
    counts = sorted({int(c) for c in np.unique(products[joint.sum(axis=0) > 0])})
    shares = np.stack([(joint * (products == c)).sum(axis=(1, 2)) for c in counts], axis=1) / size**2
    return ValidWeightCurve(size, kernel, rate_list, tuple(counts), shares)


@dataclass(frozen=True)
class Placement:
    """One dilated convolution of a model, on the valid-weight curve of its feature size."""

    module: str
    kernel: tuple[int, int]
    rate: tuple[int, int]
    stride: tuple[int, int]
    padding: tuple[int, int]
    feature: tuple[int, int]  # the convolution's input height and width
    full_share: float  # positions where all kh·kw taps read real features
    single_share: float  # positions where only one tap does (the centre, with 'same' padding)
    shares: dict[int, float]

    def as_dict(self) -> dict:
        return {
            "module": self.module,
            "kernel": list(self.kernel),
            "rate": list(self.rate),
            "stride": list(self.stride),
            "padding": list(self.padding),
            "feature": list(self.feature),
            "full_share": self.full_share,
            "centre_only_share": self.single_share,
            "shares": {str(k): v for k, v in self.shares.items()},
        }


def place(module: str, kernel, rate, feature, *, padding=None, stride=(1, 1)) -> Placement:
    """A k×k convolution with ``rate`` (per axis) on a ``feature`` = (H, W) map."""
    padding = tuple(r * (k - 1) // 2 for r, k in zip(rate, kernel, strict=True)) if padding is None else padding
    rows = valid_taps(feature[0], kernel[0], int(rate[0]), padding=padding[0], stride=stride[0])
    cols = valid_taps(feature[1], kernel[1], int(rate[1]), padding=padding[1], stride=stride[1])
    shares = tap_shares(rows, cols, kernel[0], kernel[1])
    return Placement(
        module=module,
        kernel=tuple(kernel),
        rate=tuple(rate),
        stride=tuple(stride),
        padding=tuple(padding),
        feature=tuple(feature),
        full_share=shares.get(kernel[0] * kernel[1], 0.0),
        single_share=shares.get(1, 0.0),
        shares=shares,
    )


def placements(trace: Trace) -> list[Placement]:
    """Every dilated (rate > 1) convolution the walk saw, in the order it ran."""
    return [
        place(c.module, c.kernel, c.dilation, c.in_size, padding=c.padding, stride=c.stride)
        for c in trace.convs
        if not c.transposed and max(c.dilation) > 1
    ]
