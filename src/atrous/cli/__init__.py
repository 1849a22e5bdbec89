"""``atrous <subcommand>``: one module per subcommand, each with ``add_parser`` and ``run``.

Exit codes: 0 on success, 2 on bad usage or bad input (a one-line error, no traceback
unless ``--debug``), 1 on an unexpected failure.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Subcommand modules import torch lazily, so `atrous --help` is instant.
SUBCOMMANDS = {
    name: importlib.import_module(f".{name}", __name__)
    for name in ("train", "eval", "predict", "demo", "models", "doctor", "portrait", "export", "bench", "quantize")
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
    args = parser.parse_args(argv)
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
        if isinstance(exc, UsageError | ValueError | TypeError | FileNotFoundError | KeyError | ConnectionError):
            print(f"atrous {args.command}: error: {exc}", file=sys.stderr)
            return 2
        raise
    except KeyboardInterrupt:
        print(f"atrous {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
