"""The analysis' figures as PNGs: the valid-weight curve (DeepLab v3 Fig. 4), the model's
dilated convolutions placed on it, and an effective-receptive-field heat map per stage.

Headless (matplotlib's Agg backend, imported only here, when plotting), small (about 5×4
inches at 100 dpi) and written atomically: an interrupted run leaves no half PNG.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .effective_rf import EffectiveField
from .valid_weights import Placement, ValidWeightCurve, place

if TYPE_CHECKING:
    from torch import nn

    from .report import Analysis

DPI = 100
# Heat maps wider than this are drawn averaged over blocks (the numbers are computed at
# full resolution): the figure has about 300 pixels across, and a 513-pixel map of noise
# drawn pixel for pixel made a 250 KB PNG.
DRAWN = 192
CURVE_FILE = "valid_weights.png"
PLACEMENTS_FILE = "valid_weights_model.png"


def erf_file(weights: str, name: str) -> str:
    """``erf_random_layer3.png``, ``erf_trained_logits.png`` …"""
    return f"erf_{weights}_{(name.removeprefix('backbone.') or 'logits').replace('.', '_')}.png"


def figure_names(model: nn.Module, erf_weights: Sequence[str] = ()) -> list[str]:
    """The files :func:`write_figures` writes for ``model`` once its effective fields are
    probed with these weights: known from the architecture alone, so that outputs can be
    checked before any work."""
    backbone = model if hasattr(model, "feature_info") else getattr(model, "backbone", None)
    info = getattr(backbone, "feature_info", None) or []
    maps = [f"backbone.{spec.module}" for spec in info] + [""]
    return [CURVE_FILE, PLACEMENTS_FILE] + [erf_file(w, name) for w in erf_weights for name in maps]


def write_figures(analysis: Analysis, folder: str | Path) -> list[Path]:
    """Every figure of ``analysis`` into ``folder`` (created); the paths written."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    h, w = analysis.size
    title = f"{analysis.model}, {h}×{w}, output stride {analysis.output_stride}:\nits dilated convolutions"
    written = [
        plot_valid_weight_curve(analysis.curve, folder / CURVE_FILE),
        plot_placements(analysis.placements, folder / PLACEMENTS_FILE, title=title),
    ]
    for erf in analysis.effective:
        written.append(plot_effective_field(erf, folder / erf_file(erf.weights, erf.name)))
    return written


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    from ..utils.atomic import atomic_write

    plt = _pyplot()
    fig.tight_layout()
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=DPI, format="png"))
    finally:
        plt.close(fig)
    return path


def plot_valid_weight_curve(curve: ValidWeightCurve, path: str | Path) -> Path:
    """Fig. 4: the normalised count of filter applications with 1, ((k+1)/2)² (4 for
    3×3) and k² valid weights against the rate."""
    plt = _pyplot()
    k = curve.kernel
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for count in dict.fromkeys((1, ((k + 1) // 2) ** 2, k * k)):
        ax.plot(curve.rates, curve.share(count), label=f"{count} valid weight{'s' if count > 1 else ''}")
    ax.set(
        xlabel="atrous rate",
        ylabel="normalised count",
        title=f"Valid weights of a {k}×{k} filter on a {curve.size}×{curve.size} map",
        ylim=(-0.02, 1.02),
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    return _save(fig, Path(path))


def plot_placements(placements: Sequence[Placement], path: str | Path, *, title: str = "") -> Path:
    """Each dilated convolution as two markers (share of positions with all taps valid,
    with only one) on the curves of its own feature size and kernel."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    groups: dict[tuple, list[Placement]] = {}
    for p in placements:
        groups.setdefault((p.feature, p.kernel, p.stride), []).append(p)
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for n, ((feature, kernel, stride), members) in enumerate(sorted(groups.items())):
        colour = colours[n % len(colours)]
        top = max(max(feature), max(p.rate[0] for p in members)) + 1
        rates = np.arange(1, top + 1)
        curves = [place("", kernel, (r, r), feature, stride=stride) for r in rates]
        name = f"{feature[0]}×{feature[1]}, {kernel[0]}×{kernel[1]}"
        ax.plot(rates, [c.full_share for c in curves], color=colour, label=f"{name}: all taps valid")
        ax.plot(rates, [c.single_share for c in curves], color=colour, linestyle="--", label=f"{name}: centre only")
        seen = {p.rate[0]: p for p in members}
        ax.scatter(list(seen), [p.full_share for p in seen.values()], color=colour, marker="o", zorder=3)
        ax.scatter(list(seen), [p.single_share for p in seen.values()], color=colour, marker="x", zorder=3)
    if not placements:
        ax.text(0.5, 0.5, "no dilated convolution", ha="center", va="center", transform=ax.transAxes)
    ax.set(xlabel="atrous rate", ylabel="share of positions (o: all taps valid, x: centre only)", ylim=(-0.02, 1.02))
    ax.set_title(title or "The model's dilated convolutions on the valid-weight curves", fontsize="medium")
    ax.grid(alpha=0.3)
    if placements:
        ax.legend(fontsize="x-small")
    return _save(fig, Path(path))


def _block_mean(g: np.ndarray, factor: int) -> np.ndarray:
    """``g`` averaged over factor×factor blocks (the last ones partial)."""
    if factor <= 1:
        return g
    h, w = g.shape
    padded = np.full((-(-h // factor) * factor, -(-w // factor) * factor), np.nan)
    padded[:h, :w] = g
    blocks = padded.reshape(padded.shape[0] // factor, factor, padded.shape[1] // factor, factor)
    return np.nanmean(blocks, axis=(1, 3))


def plot_effective_field(erf: EffectiveField, path: str | Path, *, title: str = "") -> Path:
    """The mean |gradient| of the centre pixel, with the 50 % and 90 % mass squares and the
    theoretical field (clipped to the image) drawn on it. Maps wider than :data:`DRAWN`
    pixels are drawn as block means."""
    plt = _pyplot()
    from matplotlib.patches import Rectangle

    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    g = erf.gradient
    h, w = g.shape
    shown = _block_mean(g, -(-max(h, w) // DRAWN))
    im = ax.imshow(
        shown / shown.max() if shown.max() > 0 else shown,
        cmap="magma",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=(-0.5, w - 0.5, h - 0.5, -0.5),  # input pixel coordinates, however it is drawn
    )
    cy, cx = erf.centre
    for radius, style, label in ((erf.radius50, ":", "50 %"), (erf.radius90, "--", "90 %")):
        ax.add_patch(
            Rectangle(
                (cx - radius - 0.5, cy - radius - 0.5), 2 * radius + 1, 2 * radius + 1,
                fill=False, edgecolor="cyan", linestyle=style, label=f"{label} of the mass (r={radius})",
            )
        )  # fmt: skip
    hy, hx = erf.half_size
    if np.isfinite(hy) and np.isfinite(hx):
        y0, y1 = max(cy - hy, 0), min(cy + hy, h - 1)
        x0, x1 = max(cx - hx, 0), min(cx + hx, w - 1)
        ax.add_patch(
            Rectangle(
                (x0 - 0.5, y0 - 0.5), x1 - x0 + 1, y1 - y0 + 1,
                fill=False, edgecolor="lime", linewidth=1.5, label=f"theoretical field ({2 * hy + 1:.0f} px)",
            )
        )  # fmt: skip
    ax.set_xlim(-0.5, w - 0.5)
    ax.set_ylim(h - 0.5, -0.5)
    ax.set_title(title or f"ERF of {erf.label}, {erf.weights} weights", fontsize="medium")
    ax.legend(fontsize="x-small", loc="lower left", framealpha=0.7)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="|∂ centre / ∂ input| (normalised)")
    return _save(fig, Path(path))
