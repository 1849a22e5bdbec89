"""Writing a report folder: ``report.html``, ``report.json`` and the PNGs, each atomically."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ...utils.atomic import atomic_write, atomic_write_text
from .build import Report
from .html import render_html

HTML_NAME = "report.html"
JSON_NAME = "report.json"
_FIGURE = re.compile(r"^(worst_\d+|reliability)\.png$")


def report_json(report: Report) -> str:
    return json.dumps(report.record, indent=2, allow_nan=False) + "\n"


def write_report(folder: str | os.PathLike, report: Report) -> list[Path]:
    """Write the report into ``folder`` (created if needed); return the files written.

    Pictures an earlier report left there under the report's own names (``worst_NN.png``,
    ``reliability.png``) but this one does not write are removed, so the folder never mixes
    two reports; no other file is touched. The caller checks the folder first (empty, or
    ``--overwrite``).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    report.record["files"] = [HTML_NAME, JSON_NAME, *report.figures]
    written = []
    for name, data in report.figures.items():
        written.append(atomic_write(folder / name, lambda tmp, data=data: Path(tmp).write_bytes(data)))
    written.append(atomic_write_text(folder / JSON_NAME, report_json(report)))
    written.append(atomic_write_text(folder / HTML_NAME, render_html(report.record, report.figures)))
    for entry in folder.iterdir():
        if _FIGURE.match(entry.name) and entry.name not in report.figures and entry.is_file():
            entry.unlink()
    return written
