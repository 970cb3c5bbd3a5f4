"""Stop and start the database during a load, and measure how long the service takes to recover."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from coupon_core.database import DatabaseHandle, EmbeddedPostgres
from experiments.faults.threaded import ThreadedFault
from experiments.faults.window import Windows

__all__ = ["DatabaseRestart", "restart_skip_reason", "time_to_recover"]


def restart_skip_reason(handle: DatabaseHandle) -> str | None:
    """Why this database cannot be restarted by the lab, or None when it can."""
    if not handle.restartable:
        return (
            f"{type(handle).__name__} cannot be restarted by the lab "
            "(a database given by URL or a container); use the embedded PostgreSQL"
        )
    return None


def time_to_recover(
    probe: Callable[[], bool], *, timeout_s: float = 30.0, every_s: float = 0.05
) -> float | None:
    """Seconds until ``probe()`` first returns True, or None if it never did within ``timeout_s``."""
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        try:
            if probe():
                return time.monotonic() - start
        except Exception:  # a probe that raises is a probe that says "not yet"
            pass
        time.sleep(every_s)
    return None


@dataclass
class DatabaseRestart(ThreadedFault):
    """After ``delay_s``, stop the database (``mode``), keep it down ``down_s``, start it again.

    Runs in its own thread so a load can go on meanwhile; ``stop()`` waits for the
    database to be up again (it is always started again, even when the load ends
    early). The window ``down`` covers stop through start.
    """

    handle: DatabaseHandle
    delay_s: float = 0.3
    down_s: float = 1.0
    mode: str = "fast"
    windows: Windows = field(default_factory=lambda: Windows("database_restart"))
    stopped_s: float | None = None  # how long pg_ctl stop took
    started_s: float | None = None  # how long pg_ctl start took, until it accepted connections
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        reason = restart_skip_reason(self.handle)
        if reason is not None:
            raise RuntimeError(reason)

    THREAD = "nemesis-restart"

    def wait(self, timeout: float = 120.0) -> bool:
        return self._done.wait(timeout)

    def stop(self) -> None:
        super().stop()
        if self.error is not None:
            raise RuntimeError(f"database restart failed: {self.error}") from self.error

    def _join_s(self) -> float:
        return 180.0

    def _run(self) -> None:
        try:
            if self._stop.wait(self.delay_s):
                return
            self.windows.open("down")
            t0 = time.monotonic()
            if isinstance(self.handle, EmbeddedPostgres):
                self.handle.stop(mode=self.mode)
            else:
                self.handle.stop()
            self.stopped_s = time.monotonic() - t0
            # Down for down_s even if the load ends: the restart is the fault under test.
            time.sleep(self.down_s)
            t1 = time.monotonic()
            self.handle.start()
            self.started_s = time.monotonic() - t1
        except BaseException as err:  # kept, re-raised by stop(): never lose a failed start
            self.error = err
        finally:
            self.windows.close("down")
            self._done.set()
