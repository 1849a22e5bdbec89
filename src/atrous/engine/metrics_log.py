"""``metrics.jsonl``, the run's log: one JSON object per log step and per evaluation.

A run killed after its last checkpoint has logged steps that its resume trains again; a
kill during a write leaves half a line. :func:`rewind_log` cuts the log back to the
checkpoint's step before a resume appends to it, so the log describes one run that never
stopped: no step twice, no broken line.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..utils.atomic import atomic_write_text

LOG_NAME = "metrics.jsonl"


def rewind_log(run_dir: str | os.PathLike, step: int) -> list[dict[str, Any]]:
    """Keep the records of steps ``<= step`` (and drop unreadable lines); return them."""
    path = Path(run_dir) / LOG_NAME
    if not path.is_file():
        return []
    kept: list[dict[str, Any]] = []
    lines = path.read_text(errors="replace").splitlines()
    for line in lines:
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue  # the half line of a process killed mid-write
        if isinstance(record, dict) and int(record.get("step", 0)) <= step:
            kept.append(record)
    if len(kept) != len(lines):
        atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in kept))
    return kept
