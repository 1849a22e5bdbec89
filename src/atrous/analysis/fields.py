"""Receptive-field arithmetic along one axis: what each kind of layer does to a field.

A feature map's field along an axis is three numbers (Araujo, Norris & Sim, "Computing
Receptive Fields of Convolutional Neural Networks", Distill 2019, §"Single-path
networks"): its **size** *r* (input pixels one output pixel can see), its **jump** *j*
(input pixels between two neighbouring output pixels, the product of the strides so far)
and its **start** (the centre, in input pixel coordinates, of the field of output pixel
0; output pixel *i* is centred at ``start + i·jump``); and a fourth, the **slack**, for
the layers the article's formulas do not cover (below). The input itself is
``Field(1, 1, 0)``.

Coordinates are those of the *padded* input, as in the article: zero padding (and mirror
padding, see :func:`pad`) adds virtual pixels before pixel 0, so a start or a field edge
can be negative, or lie past the last pixel; clip to the image where that matters.

Resizing (``interpolate``, transposed convolution) and adaptive pooling over sizes that do
not divide are not translation-equivariant: the cells an output pixel reads shift in phase
from one pixel to the next. For them the size is the most cells any output pixel reads
(bilinear: two, so the field widens by one input jump) and the centre is a straight-line
fit; :attr:`Field.slack` says how far a pixel's true field can sit from that fit, so that
``Field.bounds(i)`` always holds pixel *i*'s field. Convolutions and poolings add no
slack; it is carried through them (in input pixels).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Field:
    """The receptive field of a feature map along one axis (see the module docstring)."""

    size: float
    jump: float
    start: float
    slack: float = 0.0

    @property
    def first(self) -> float:
        """The first input pixel output pixel 0 can see (padded coordinates)."""
        return self.start - (self.size - 1) / 2

    @property
    def last(self) -> float:
        return self.start + (self.size - 1) / 2

    def centre(self, index: float) -> float:
        """Centre of output pixel ``index``'s field, in input pixels."""
        return self.start + index * self.jump

    def span(self, index: float) -> tuple[float, float]:
        """First and last input pixel output pixel ``index`` can see."""
        c = self.centre(index)
        return c - (self.size - 1) / 2, c + (self.size - 1) / 2

    def bounds(self, index: float) -> tuple[float, float]:
        """:meth:`span` widened by :attr:`slack`: pixel ``index``'s field is inside, always."""
        first, last = self.span(index)
        return first - self.slack, last + self.slack


INPUT = Field(1.0, 1.0, 0.0)


def conv(f: Field, kernel: int, stride: int = 1, padding: float = 0, dilation: int = 1) -> Field:
    """A convolution or pooling window (Araujo et al., eqs. for r, j and the start).

    The dilated kernel spans ``dilation·(kernel − 1) + 1`` input cells; ``padding`` is
    the padding before the first cell.
    """
    span = dilation * (kernel - 1)  # cells between the first and the last tap
    return Field(
        size=f.size + span * f.jump,
        jump=f.jump * stride,
        start=f.start + (span / 2 - padding) * f.jump,
        slack=f.slack,
    )


def transposed(f: Field, kernel: int, stride: int, padding: int, dilation: int, n_in: int, n_out: int) -> Field:
    """A transposed convolution: output *i* reads input *m* where ``m·stride − padding +
    dilation·t = i`` for a tap *t* (and ``0 ≤ m < n_in``)."""
    i = np.arange(n_out)[:, None]
    numer = i + padding - dilation * np.arange(kernel)[None, :]
    reads = (numer % stride == 0) & (numer >= 0) & (numer // stride < n_in)
    m = np.where(reads, numer // stride, 0)
    some = reads.any(axis=1)  # with kernel < stride some outputs read nothing (bias only)
    lo = np.where(reads, m, n_in).min(axis=1)[some]
    hi = np.where(reads, m, -1).max(axis=1)[some]
    return _fit(f, lo, hi, np.arange(n_out)[some], 1 / stride)


def resize(
    f: Field, n_in: int, n_out: int, mode: str, align_corners: bool | None = None, scale: float | None = None
) -> Field:
    """``F.interpolate`` from ``n_in`` to ``n_out`` cells, read the way PyTorch reads them.

    Without ``align_corners`` output pixel *i* samples input coordinate ``(i + ½)·n_in/n_out
    − ½`` (clamped at 0) for bilinear and bicubic, cell ``⌊i·n_in/n_out⌋`` for nearest and
    ``⌊(i + ½)·n_in/n_out⌋`` for nearest-exact; with it, ``i·(n_in − 1)/(n_out − 1)``.
    Bilinear reads the two cells around its sample (the field widens by one input jump),
    bicubic four; ``area`` is adaptive average pooling. ``scale`` overrides ``n_in/n_out``
    where PyTorch uses the caller's ``1/scale_factor`` instead.
    """
    if mode == "area":
        return window(f, n_in, n_out)
    i = np.arange(n_out)
    if align_corners and n_out > 1:
        scale = (n_in - 1) / (n_out - 1)
        src = i * scale
    else:
        scale = n_in / n_out if scale is None else scale
        if mode == "nearest":
            src = i * scale
        elif mode == "nearest-exact":
            src = (i + 0.5) * scale
        else:
            src = (i + 0.5) * scale - 0.5
            src = src if mode == "bicubic" else np.maximum(src, 0)  # PyTorch clamps all but cubic
    base = np.minimum(np.floor(src + 1e-9), n_in - 1).astype(np.int64)
    before, after = {"nearest": (0, 0), "nearest-exact": (0, 0), "bilinear": (0, 1), "linear": (0, 1)}.get(mode, (1, 2))
    lo = np.clip(base - before, 0, n_in - 1)
    hi = np.clip(base + after, 0, n_in - 1)
    return _fit(f, lo, hi, i, scale)


def window(f: Field, n_in: int, bins: int) -> Field:
    """Adaptive pooling of ``n_in`` cells into ``bins``: bin *i* covers cells
    ``⌊i·n/b⌋ … ⌈(i + 1)·n/b⌉ − 1`` (PyTorch's windows). ``bins = 1`` is global pooling."""
    i = np.arange(bins)
    lo = (i * n_in) // bins
    hi = -((-(i + 1) * n_in) // bins) - 1
    return _fit(f, lo, hi, i, n_in / bins)


def _fit(f: Field, lo: np.ndarray, hi: np.ndarray, index: np.ndarray, scale: float) -> Field:
    """The field of outputs ``index`` that read input cells ``lo … hi`` (each its own
    range): size from the widest range, jump ``scale`` cells, centre a straight line
    through the ranges' middles, and the slack the middles leave around it."""
    if len(index) == 0:
        return Field(f.size, f.jump * scale, f.start, f.slack)
    deviation = (lo + hi) / 2 - index * scale  # each range's middle, off the line through 0
    offset = (deviation.max() + deviation.min()) / 2
    return Field(
        size=f.size + float((hi - lo).max()) * f.jump,
        jump=f.jump * scale,
        start=f.start + float(offset) * f.jump,
        slack=f.slack + float(deviation.max() - deviation.min()) / 2 * f.jump,
    )


def whole(f: Field, n_in: int) -> Field:
    """An operation whose every output sees all ``n_in`` cells (a global reduction, a
    matrix product over positions, anything this walk does not know): the field of
    the union of all cells. Never smaller than the truth."""
    return window(f, n_in, 1)


def pad(f: Field, before: float) -> Field:
    """``before`` cells added before cell 0 (zero, reflect, replicate or mirror padding
    alike; a negative value crops). Padded cells are placed where a virtual continuation
    of the map would be: mirror padding is described in padded coordinates, as zero
    padding is, not folded back onto the pixels it copies."""
    return Field(f.size, f.jump, f.start - before * f.jump, f.slack)


def select(f: Field, first: int, step: int = 1) -> Field:
    """Every ``step``-th cell from cell ``first`` (slicing)."""
    return Field(f.size, f.jump * step, f.start + first * f.jump, f.slack)


def union(fields: Iterable[Field]) -> Field:
    """Several maps of the same grid combined pixel by pixel (a sum, a product, a
    concatenation of channels): each output pixel sees what any of them sees.

    Exact for the usual case of aligned fields of one jump (a residual unit, ASPP's
    branches: the largest wins); for fields of different jumps the largest jump is kept.
    The slack is what it takes to hold every input's bounds (:meth:`Field.bounds`).
    """
    fields = list(fields)
    first = min(f.first for f in fields)
    last = max(f.last for f in fields)
    outer_first = min(f.first - f.slack for f in fields)
    outer_last = max(f.last + f.slack for f in fields)
    return Field(
        size=last - first + 1,
        jump=max(f.jump for f in fields),
        start=(first + last) / 2,
        slack=max(first - outer_first, outer_last - last),
    )
