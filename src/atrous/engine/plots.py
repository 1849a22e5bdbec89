"""PNG plots written at the end of training: curves, per-class IoU, confusion matrix."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _records(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_training_plots(
    run_dir: str | Path, class_names: list[str], *, score: str = "miou", label: str = "mIoU"
) -> list[Path]:
    """Write under ``run_dir/plots``: ``loss.png`` (the total and each logged loss part),
    ``<score>.png`` (the validation score, e.g. ``miou.png`` or ``mask_AP.png``) and, when
    the run logged them, ``per_class_iou.png`` and ``confusion_matrix.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    run_dir = Path(run_dir)
    out = run_dir / "plots"
    out.mkdir(parents=True, exist_ok=True)
    records = _records(run_dir)
    train = [r for r in records if r.get("kind") == "train"]
    val = [r for r in records if r.get("kind") == "val"]
    written = []

    if train:
        fig, ax = plt.subplots(figsize=(6, 4))
        parts = [k for k in train[-1] if k.startswith("loss")]  # "loss", then each part (loss_mask …)
        for key in parts:
            ax.plot([r["step"] for r in train], [r.get(key, np.nan) for r in train], label=key)
        if len(parts) > 1:
            ax.legend(fontsize="small")
        ax.set(xlabel="step", ylabel="training loss", title="Loss")
        ax.grid(alpha=0.3)
        written.append(_save(fig, out / "loss.png"))

    if val:
        fig, ax = plt.subplots(figsize=(6, 4))
        values = [r.get(score) if r.get(score) is not None else np.nan for r in val]
        ax.plot([r["step"] for r in val], values, marker="o")
        ax.set(xlabel="step", ylabel=f"validation {label}", title=label, ylim=(0, 1))
        ax.grid(alpha=0.3)
        written.append(_save(fig, out / f"{score}.png"))

        per_class = val[-1].get("per_class", {})
        if per_class:
            names = list(per_class)
            ious = [per_class[n]["iou"] if per_class[n]["iou"] is not None else np.nan for n in names]
            fig, ax = plt.subplots(figsize=(max(6, 0.5 * len(names)), 4))
            ax.bar(range(len(names)), ious)
            ax.set_xticks(range(len(names)), names, rotation=45, ha="right")
            ax.set(ylabel="IoU", ylim=(0, 1), title=f"Per-class IoU at step {val[-1]['step']}")
            written.append(_save(fig, out / "per_class_iou.png"))

    matrix_path = run_dir / "confusion_matrix.npy"
    if matrix_path.is_file():
        matrix = np.load(matrix_path).astype(np.float64)
        rows = matrix.sum(axis=1, keepdims=True)
        normalised = np.divide(matrix, rows, out=np.zeros_like(matrix), where=rows > 0)
        n = len(normalised)
        fig, ax = plt.subplots(figsize=(max(5, 0.45 * n + 2), max(4, 0.45 * n + 1.5)))
        im = ax.imshow(normalised, vmin=0, vmax=1, cmap="Blues")
        labels = class_names if len(class_names) == n else [str(i) for i in range(n)]
        ax.set_xticks(range(n), labels, rotation=45, ha="right")
        ax.set_yticks(range(n), labels)
        ax.set(xlabel="predicted", ylabel="ground truth", title="Normalised confusion matrix")
        fig.colorbar(im, ax=ax)
        written.append(_save(fig, out / "confusion_matrix.png"))
    return written


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    from ..utils.atomic import atomic_write

    fig.tight_layout()
    try:  # atomic: a run killed mid-plot leaves the previous plot, never half a PNG
        atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100, format=path.suffix.lstrip(".") or "png"))
    finally:
        plt.close(fig)
    return path
