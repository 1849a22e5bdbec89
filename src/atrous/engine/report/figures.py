"""The report's pictures as PNG bytes: the reliability diagram (matplotlib, Agg) and arrays."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from ...metrics.calibration import ReliabilityBins


def png_bytes(array: np.ndarray) -> bytes:
    """An (H, W, 3) uint8 array as PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def reliability_diagram(before: ReliabilityBins, after: ReliabilityBins, temperature: float) -> bytes:
    """Accuracy against confidence per bin, before and after temperature scaling, over the
    share of pixels per bin (Guo et al. 2017, Fig. 1): a calibrated model follows the diagonal."""
    from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

    figure = Figure(figsize=(5.2, 5.6), dpi=100)
    top, bottom = figure.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    edges = before.edges
    width = edges[1] - edges[0]
    centers = edges[:-1] + width / 2
    top.plot([0, 1], [0, 1], color="#888888", linestyle="--", linewidth=1, label="perfect calibration")
    top.bar(
        centers,
        np.nan_to_num(before.accuracy),
        width=width,
        color="#4a7fb5",
        edgecolor="#2b4c6f",
        alpha=0.8,
        label=f"model (ECE {100 * before.ece:.2f} %)",
    )
    kept = after.count > 0
    top.plot(
        centers[kept],
        after.accuracy[kept],
        marker="o",
        color="#d9822b",
        label=f"T = {temperature:.3g} (ECE {100 * after.ece:.2f} %)",
    )
    top.set_ylabel("accuracy")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1)
    top.legend(loc="upper left", fontsize=8)
    top.set_title("reliability (top-label confidence, 15 bins)", fontsize=10)
    share = before.count / max(1, before.count.sum())
    bottom.bar(centers, share, width=width, color="#4a7fb5", edgecolor="#2b4c6f", alpha=0.8)
    bottom.set_xlabel("confidence")
    bottom.set_ylabel("share of pixels")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()
