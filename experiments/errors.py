"""The lab's errors: one tree, mapped to exit codes in one place (``experiments.cli``).

    LabError                    the lab could not do what was asked; raised as is when an
    │                           experiment cannot be set up (a setup coupon refused, a
    │                           target that is no server's root URL): exit 1
    ├── UsageError              a wrong argument: one line naming it, exit 2
    │   ├── SpecError           a run spec that cannot run: an unknown parameter, a value
    │   │                       of the wrong type or out of its declared range (a ValueError)
    │   └── RunNotFound         a run reference (id, folder, latest) naming no run (a LookupError)
    ├── CommandError            the arguments are right, the world is not (a database that
    │                           does not answer, a Locust process that failed): exit 1
    ├── RunnerError             a plan could not be carried out (a worker not joined; a RuntimeError)
    └── SwarmError              a Locust run could not be carried out (a RuntimeError)

Outside the tree, on purpose: ``Interrupted`` (SIGINT/SIGTERM, a ``KeyboardInterrupt``
so every ``finally`` runs; exit 130/143), a check's ``ImpossibleHistory`` (a crashed
check is an unknown verdict, never an error of the run), a fault's ``InjectedFault``
(it must look like the driver's own error to the service under test) and
``coupon_core.errors`` (the system under test's own tree; its ``SetupError`` is mapped
to exit 1 beside ``LabError``).

A failed experiment is no error: it is a Result whose verdicts say so (exit 1 from
``run``, with the failed checks named).
"""

from __future__ import annotations

import signal

__all__ = [
    "CommandError",
    "Interrupted",
    "LabError",
    "RunNotFound",
    "RunnerError",
    "SpecError",
    "SwarmError",
    "UsageError",
]


class LabError(Exception):
    """The root: see the module. Its message is one line, fit to show as it is."""


class UsageError(LabError):
    """A wrong argument: one line (``coupon-chaos COMMAND: <message>``), exit code 2.

    ``show_usage``: the command's usage goes before the line (a bare ``run``)."""

    def __init__(self, message: str, *, show_usage: bool = False) -> None:
        super().__init__(message)
        self.show_usage = show_usage


class SpecError(UsageError, ValueError):
    """A run spec that cannot run: an unknown parameter, a value of the wrong type or out
    of its range. The message names the parameter as ``name=value``."""


class RunNotFound(UsageError, LookupError):
    """A run reference (id, folder, ``latest``) that names no run with a summary."""


class CommandError(LabError):
    """A failure to report as one line (``coupon-chaos: <message>``), exit code 1."""


class RunnerError(LabError, RuntimeError):
    """The run could not be carried out (a worker could not be joined, a broken barrier)."""


class SwarmError(LabError, RuntimeError):
    """The Locust run could not be carried out (a process failed, the bound passed)."""


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM: raised in the main thread, so ``finally`` blocks run.

    Python's default for SIGTERM ends the process at once: no ``finally``, no
    ``atexit``, and the suite's embedded PostgreSQL was left running (parent PID 1).
    """

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
