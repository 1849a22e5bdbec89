"""``atrous <subcommand>``: one module per subcommand, each with ``add_parser`` and ``run``.

Exit codes (docs/reliability.md): 0 on success; 2 on bad usage or bad input, a one-line
error that names the file or option (no traceback unless ``--debug``); 3 when ``atrous
doctor`` finds problems; 128 + the signal number when SIGTERM or SIGINT stopped a run
(after its checkpoint); 1 on an unexpected failure (a traceback: a bug to report).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules import what their command needs inside run(), not at import.
SUBCOMMANDS = {
    name: importlib.import_module(f".{name}", __name__)
    for name in (
        "train",
        "eval",
        "predict",
        "demo",
        "models",
        "doctor",
        "portrait",
        "export",
        "bench",
        "quantize",
        "serve",
        "analyze",
    )
}


class UsageError(Exception):
    """Bad arguments or input: reported in one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="atrous", description="Semantic segmentation along the DeepLab lineage.")
    parser.add_argument("--version", action="version", version=f"atrous {__version__}")
    parser.add_argument(
        "--debug", action="store_true", help="show full tracebacks, and log decisions (precision) with their figures"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        module.add_parser(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    args.argv = argv  # the command as given, for the records a run keeps (the model card)
    if args.debug:
        import logging

        # atrous.runtime logs each precision decision with its timings and label agreement.
        logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        return int(SUBCOMMANDS[args.command].run(args) or 0)
    except Exception as exc:
        if args.debug:
            raise
        from ..engine.trainer import NonFiniteLossError, TrainingInterrupted

        if isinstance(exc, TrainingInterrupted):
            print(f"atrous {args.command}: {exc}", file=sys.stderr)
            return 128 + int(exc.signum)
        if isinstance(exc, NonFiniteLossError):
            print(f"atrous {args.command}: error: {exc}", file=sys.stderr)
            return 1
        import torch

        if isinstance(exc, MemoryError | torch.OutOfMemoryError):  # the machine's limit, not a bad argument
            reason = one_line(exc) if str(exc).strip() else "the machine ran out of memory"
            print(f"atrous {args.command}: error: out of memory: {reason}", file=sys.stderr)
            return 1
        if isinstance(exc, UsageError | ValueError | TypeError | KeyError | ConnectionError | OSError):
            # OSError: a missing, unreadable or unwritable file or folder the user named.
            print(f"atrous {args.command}: error: {one_line(exc)}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(f"atrous {args.command}: interrupted", file=sys.stderr)
        return 130


def one_line(exc: BaseException) -> str:
    """The error as one line. An error raised in a DataLoader worker arrives with the
    worker's traceback in its message ("Caught X in DataLoader worker process 0. Original
    Traceback ..."): its last line is the original error."""
    text = str(exc.args[0]) if isinstance(exc, KeyError) and exc.args else str(exc)
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    if len(lines) > 1 and "Traceback" in text:
        last = lines[-1]
        # "atrous.data.errors.DatasetError: file x ..." -> "file x ..."
        head, sep, rest = last.partition(": ")
        return rest if sep and head.replace(".", "").replace("_", "").isalnum() else last
    if isinstance(exc, OSError) and exc.filename is not None and exc.strerror:
        return f"{exc.filename}: {exc.strerror}"
    return " ".join(lines)


if __name__ == "__main__":
    sys.exit(main())
