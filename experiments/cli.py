"""The ``coupon-chaos`` command line: one subcommand per module of ``experiments.commands``.

Each module there exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``, and checks its arguments (``experiments.cli_checks``) before
any work. Whatever goes wrong is one line on stderr, never a traceback (``--debug``
shows one). The exit codes, decided here and nowhere else (``exit_code``), follow the
error trees (``experiments.errors``, ``coupon_core.errors``):

    exit 0     the command did what was asked (``run``: every experiment passed)
    exit 2     a usage error: argparse's errors and ``UsageError`` (a wrong argument, a
               parameter out of its range, an unknown run); a bare ``run`` prints usage
    exit 1     a failed experiment; a ``LabError`` (the arguments are right, the world is
               not: a database that does not answer); a ``coupon_core`` ``SetupError``; or
               an unexpected error (named, with a hint to rerun with --debug)
    exit 130   interrupted by SIGINT (Ctrl-C); 143 by SIGTERM: both end a command the
               same way (``Interrupted``, a KeyboardInterrupt), so whatever it started
               is stopped on the way out and ``run`` records the run as interrupted
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from types import FrameType, ModuleType
from typing import NoReturn

from coupon_core.errors import SetupError
from experiments.errors import CommandError, Interrupted, LabError, UsageError

__all__ = ["EXIT_CODES", "CommandError", "Interrupted", "build_parser", "exit_code", "main"]

# Order is the order of ``coupon-chaos --help``.
_COMMANDS: tuple[str, ...] = (
    "serve",
    "db",
    "bench",
    "run",
    "list",
    "mutants",
    "runs",
    "compare",
    "open",
    "locust",
    "sweep",
)


#: Each kind of error the lab and the system under test raise on purpose, and its exit
#: code; the first kind an error is an instance of decides (most specific first).
EXIT_CODES: tuple[tuple[type[Exception], int], ...] = (
    (UsageError, 2),
    (LabError, 1),
    (SetupError, 1),
)


def exit_code(err: BaseException) -> int | None:
    """The exit code of an error the lab raises on purpose; None for any other."""
    if isinstance(err, KeyboardInterrupt):
        return _exit_code(getattr(err, "signum", signal.SIGINT))
    return next((code for kind, code in EXIT_CODES if isinstance(err, kind)), None)


def _exit_code(signum: int) -> int:
    return 128 + signum


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line naming the command, not usage + error."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _load(name: str) -> ModuleType:
    return importlib.import_module(f"experiments.commands.{name}")


def build_parser() -> argparse.ArgumentParser:
    debug = _Parser(add_help=False)
    debug.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an unexpected error",
    )
    parser = _Parser(
        prog="coupon-chaos",
        description="Serve the coupon service and run the chaos lab against it.",
        parents=[debug],
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in _COMMANDS:
        module = _load(name)
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP, parents=[debug])
        module.add_arguments(p)
        p.set_defaults(_run=module.run, _parser=p)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; exit 130 after a SIGINT, 143 after a SIGTERM, even where a
    library swallowed the interrupt.

    Seen once under two busy loops: a SIGINT sent 0.5 s after the plan line ended the
    run with exit 0; the KeyboardInterrupt was caught somewhere on the way (not found:
    our code catches it only here). The signal noted by our own handler cannot be
    swallowed.
    """
    with _interrupts() as seen:
        code = _main(argv)
    if seen and code != _exit_code(seen[0]):
        print("coupon-chaos: interrupted", file=sys.stderr)
        return _exit_code(seen[0])
    return code


_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def _interrupts() -> Iterator[list[int]]:
    """Note every SIGINT and SIGTERM; the first raises ``Interrupted``, later ones are
    only noted (the command is stopping what it started: it must not be cut short)."""
    seen: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield seen  # signal handlers belong to the main thread; nothing to watch here
        return

    def note(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        if len(seen) == 1:
            raise Interrupted(signum)

    previous = {s: signal.signal(s, note) for s in _SIGNALS}
    try:
        yield seen
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _main(argv: Sequence[str] | None) -> int:
    args = argparse.Namespace()
    prog = "coupon-chaos"
    try:
        parser = build_parser()
        args, extra = parser.parse_known_args(argv)
        if extra:
            # Said by the command they were given to, not by coupon-chaos itself.
            _command_parser(parser, args.command).error(
                f"unrecognized arguments: {' '.join(extra)}"
            )
        prog = f"coupon-chaos {args.command}"
        code: int = args._run(args)
    except (LabError, SetupError) as err:
        if isinstance(err, UsageError):
            if err.show_usage and hasattr(args, "_parser"):
                args._parser.print_usage(sys.stderr)
            print(f"{prog}: {err}", file=sys.stderr)
        else:
            print(f"coupon-chaos: {err}", file=sys.stderr)
        return exit_code(err) or 1
    except KeyboardInterrupt as err:
        print("coupon-chaos: interrupted", file=sys.stderr)
        return exit_code(err) or 130
    except BrokenPipeError:
        # `coupon-chaos list | head`: the reader left; nothing to say to it.
        sys.stderr.close()
        return 1
    except Exception as err:
        if getattr(args, "debug", False):
            traceback.print_exc()
        hint = "" if getattr(args, "debug", False) else " (rerun with --debug for the traceback)"
        print(
            f"coupon-chaos: unexpected {type(err).__name__}: {_one_line(err)}{hint}",
            file=sys.stderr,
        )
        return 1
    return code


def _command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found: argparse.ArgumentParser = action.choices[command]
            return found
    return parser


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0][:200] if lines else "(no message)"


if __name__ == "__main__":
    sys.exit(main())
