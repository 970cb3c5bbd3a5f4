"""The ``coupon-chaos`` command line: one subcommand per module of ``experiments.commands``.

Each module there exposes ``NAME``, ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``, and checks its arguments (``experiments.cli_checks``) before
any work. Whatever goes wrong is one line on stderr, never a traceback (``--debug``
shows one):

    exit 2     a usage error: an unknown choice, an unreadable URL, an --out that
               cannot be written (argparse's errors and ``UsageError``)
    exit 1     a failed experiment, or a failure the user can fix (``CommandError``),
               or an unexpected error (named, with a hint to rerun with --debug)
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

__all__ = ["CommandError", "Interrupted", "build_parser", "main"]

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


class CommandError(Exception):
    """A failure to report as one line (``coupon-chaos: <message>``), exit code 1."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: raised in the main thread, so ``finally`` blocks run.

    Python's default for SIGTERM ends the process at once: no ``finally``, no
    ``atexit``, and the suite's embedded PostgreSQL was left running (parent PID 1).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


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
        p.set_defaults(_run=module.run)
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
    from experiments.cli_checks import UsageError

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
    except UsageError as err:
        print(f"{prog}: {err}", file=sys.stderr)
        return 2
    except CommandError as err:
        print(f"coupon-chaos: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print("coupon-chaos: interrupted", file=sys.stderr)
        return _exit_code(signum)
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
    # Run as ``python -m experiments.cli``: call the importable module's main, so the
    # CommandError the commands raise (from experiments.cli) is the one caught there.
    from experiments.cli import main as _entry

    sys.exit(_entry())
