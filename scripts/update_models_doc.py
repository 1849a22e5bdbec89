"""Regenerate the model and backbone tables of docs/models.md.

    python scripts/update_models_doc.py          # rewrite the generated sections in place
    python scripts/update_models_doc.py --check  # exit 1 (and show a diff) if the doc is stale

Only the text between ``<!-- models-table:start -->`` / ``<!-- models-table:end -->`` (and
the ``backbones-table`` markers) is generated; the prose around it is kept as written.
Every model is built on the meta device, so this takes seconds and computes nothing.
"""

from __future__ import annotations

import argparse
import difflib
import sys
import time
from pathlib import Path

from atrous.benchmark.model_table import TABLE_SIZE, render_doc
from atrous.utils.atomic import atomic_write_text

DEFAULT_DOC = Path(__file__).resolve().parents[1] / "docs" / "models.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--doc", type=Path, default=DEFAULT_DOC, help=f"document to update (default {DEFAULT_DOC})")
    parser.add_argument("--check", action="store_true", help="do not write; exit 1 if the document is stale")
    parser.add_argument("--size", type=int, default=TABLE_SIZE, help=f"input side for GFLOPs (default {TABLE_SIZE})")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    current = args.doc.read_text()
    updated = render_doc(current, args.size)
    seconds = time.perf_counter() - start
    if updated == current:
        print(f"{args.doc} is up to date ({seconds:.1f} s)")
        return 0
    if args.check:
        diff = difflib.unified_diff(
            current.splitlines(keepends=True), updated.splitlines(keepends=True), str(args.doc), "regenerated"
        )
        sys.stdout.writelines(diff)
        print(f"{args.doc} is stale: run python scripts/update_models_doc.py", file=sys.stderr)
        return 1
    atomic_write_text(args.doc, updated)
    print(f"updated {args.doc} ({seconds:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
