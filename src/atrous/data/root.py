"""Where datasets live when a recipe does not say: ``$ATROUS_DATA/<dataset>``."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_DATA_DIR = "../shared/data"  # beside the project checkout, as on the project's machines


def data_dir() -> Path:
    """``$ATROUS_DATA``, or ``../shared/data`` relative to the working directory."""
    return Path(os.environ.get("ATROUS_DATA", DEFAULT_DATA_DIR))


def resolve_root(dataset: str, root: str | os.PathLike | None) -> Path | None:
    """``root`` when given; otherwise ``data_dir()/<dataset>`` if that folder exists (else None)."""
    if root is not None:
        return Path(root)
    candidate = data_dir() / dataset.lower()
    return candidate if candidate.is_dir() else None
