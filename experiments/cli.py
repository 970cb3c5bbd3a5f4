"""The ``coupon-chaos`` command line: one subcommand per module of ``experiments.commands``.

Each module there exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``. Errors a user can fix are printed as one plain line (exit 2
for usage, 1 for failure), never as a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from types import ModuleType

__all__ = ["CommandError", "main"]

# Order is the order of ``coupon-chaos --help``.
_COMMANDS: tuple[str, ...] = ("serve", "db", "bench", "run", "list", "mutants", "sweep")


class CommandError(Exception):
    """A failure to report as one line (``coupon-chaos: <message>``), exit code 1."""


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"experiments.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="coupon-chaos",
        description="Serve the coupon service and run the chaos lab against it.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        module = _load(name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args._run(args)
    except CommandError as err:
        print(f"coupon-chaos: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("coupon-chaos: interrupted", file=sys.stderr)
        return 130
    return code


if __name__ == "__main__":
    # Run as ``python -m experiments.cli``: call the importable module's main, so the
    # CommandError the commands raise (from experiments.cli) is the one caught there.
    from experiments.cli import main as _main

    sys.exit(_main())
