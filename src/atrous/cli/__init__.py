"""``atrous <subcommand>``: one module per subcommand, each with ``add_parser`` and ``run``.

Exit codes: 0 on success, 2 on bad usage or bad input (a one-line error, no traceback
unless ``--debug``), 1 on an unexpected failure.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import demo, models

SUBCOMMANDS = {"models": models, "demo": demo}


class UsageError(Exception):
    """Bad arguments or input: reported in one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="atrous", description="Semantic segmentation along the DeepLab lineage.")
    parser.add_argument("--version", action="version", version=f"atrous {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in SUBCOMMANDS.items():
        module.add_parser(sub.add_parser(name, help=module.HELP, description=module.HELP))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(SUBCOMMANDS[args.command].run(args) or 0)
    except (UsageError, ValueError, TypeError, FileNotFoundError, KeyError) as exc:
        if args.debug:
            raise
        print(f"atrous {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"atrous {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
