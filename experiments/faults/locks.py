"""Hold a coupon's row lock from another session, and run slow queries (pg_sleep)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import psycopg
import psycopg_pool

from experiments.checks import results_within
from experiments.faults.held import HeldFault
from experiments.faults.window import Window, Windows
from experiments.history import History, Op
from experiments.result import Verdict

__all__ = ["RowLockHolder", "SlowQuery", "held_lock_verdicts", "timed_sleep"]

NEMESIS_APP = "coupon-lab-nemesis"


@dataclass
class RowLockHolder(HeldFault):
    """``SELECT ... FOR UPDATE`` on a coupon's row in a session of ours, for ``hold_s`` seconds.

    Every strategy's claim updates the row, so every claim on this coupon waits
    while the lock is held (or times out: lock_timeout, statement_timeout). The
    transaction rolls back at the end: the holder changes nothing. ``start()``
    returns once the lock is held; ``stop()`` releases it early.
    """

    url: str
    coupon: str
    hold_s: float = 1.0
    windows: Windows = field(default_factory=lambda: Windows("row_lock_held"))
    holder_pid: int | None = None
    found: bool = False
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _held: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    error: BaseException | None = None

    THREAD = "nemesis-row-lock"

    def start(self, timeout: float = 10.0) -> Self:
        super().start()
        if not self._held.wait(timeout):
            raise RuntimeError(f"row lock on {self.coupon!r} not taken within {timeout}s")
        if self.error is not None:
            raise RuntimeError(f"row lock on {self.coupon!r} failed: {self.error}") from self.error
        return self

    def _run(self) -> None:
        try:
            with (
                psycopg.connect(
                    self.url, autocommit=True, connect_timeout=5, application_name=NEMESIS_APP
                ) as conn,
                conn.transaction(force_rollback=True),
            ):
                row = conn.execute(
                    "SELECT pg_backend_pid(), name FROM coupons WHERE name = %s FOR UPDATE",
                    (self.coupon,),
                ).fetchone()
                self.found = row is not None
                self.holder_pid = int(str(row[0])) if row is not None else None
                self.windows.open("held")
                self._held.set()
                self._stop.wait(self.hold_s)
                # Close the window before the ROLLBACK goes out, not after it returns:
                # a waiter runs the moment the server drops the lock, and may finish
                # before this thread is scheduled again. The window is then exactly
                # the span when the lock was certainly held.
                self.windows.close("held")
        except BaseException as err:  # reported by start() or the scenario, never swallowed
            self.error = err
        finally:
            self._held.set()
            self.windows.close_all()


@dataclass
class SlowQuery:
    """``pg_sleep`` on a connection with the given statement timeout; records what happened.

    Shows that a session opened with the service's options cancels a slow statement
    at the timeout: ``run()`` returns the seconds it took and the error class name
    (``QueryCanceled`` when the timeout fired, None when the sleep completed).
    """

    url: str
    sleep_s: float
    statement_timeout_ms: int = 0
    lock_timeout_ms: int = 0

    def run(self) -> tuple[float, str | None]:
        opts = []
        if self.statement_timeout_ms:
            opts.append(f"-c statement_timeout={self.statement_timeout_ms}")
        if self.lock_timeout_ms:
            opts.append(f"-c lock_timeout={self.lock_timeout_ms}")
        start = time.monotonic()
        with psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=5,
            application_name=NEMESIS_APP,
            options=" ".join(opts),
        ) as conn:
            _, err = timed_sleep(conn, self.sleep_s)
        return time.monotonic() - start, err

    @staticmethod
    def on_pool(pool: psycopg_pool.ConnectionPool[Any], sleep_s: float) -> tuple[float, str | None]:
        """``pg_sleep`` on a connection of ``pool`` (the service's own, with the options
        it opens its connections with): what the service's timeout does, not ours."""
        with pool.connection(timeout=10.0) as conn:
            return timed_sleep(conn, sleep_s)


def timed_sleep(conn: psycopg.Connection[Any], sleep_s: float) -> tuple[float, str | None]:
    """``SELECT pg_sleep(sleep_s)`` on ``conn``: (seconds it took, the error class name or None)."""
    start = time.monotonic()
    try:
        conn.execute("SELECT pg_sleep(%s)", (sleep_s,))
    except psycopg.Error as err:
        return time.monotonic() - start, type(err).__name__
    return time.monotonic() - start, None


def held_lock_verdicts(
    history: History, holder: RowLockHolder
) -> tuple[list[Op], Window | None, list[Verdict]]:
    """What every held-lock scenario judges: the load's claims, the window the lock was
    surely held, and the verdicts ``claim_results`` (ok or a clean unavailable),
    ``lock_taken`` (held on the coupon for its planned time) and
    ``no_success_while_locked``."""
    ws = holder.windows.windows
    w = ws[0] if ws else None
    claims = [o for o in history.ops if o.kind == "claim" and o.phase not in (None, "setup")]
    ok_in_lock = (
        []
        if w is None
        else [
            o.op_id
            for o in claims
            if o.result == "ok" and w.start_ns <= o.invoke_ns and o.complete_ns <= w.end_ns
        ]
    )
    held_s = None if w is None else round(w.duration_s, 4)
    return (
        claims,
        w,
        [
            results_within(history, "claim", {"ok", "unavailable"}),
            Verdict(
                "lock_taken",
                # The plan's figure: held as long as planned (a release cut short is not it).
                holder.found and held_s is not None and held_s >= holder.hold_s * 0.9,
                f"row lock on {holder.coupon} held {held_s} s of the planned {holder.hold_s:g} s"
                + ("" if holder.found else " (row not found)"),
                {"held_s": held_s, "planned_s": holder.hold_s, "found": holder.found},
            ),
            Verdict(
                "no_success_while_locked",
                not ok_in_lock,
                f"{len(ok_in_lock)} claims succeeded while the row was locked",
                {"ops": ok_in_lock[:20]},
            ),
        ],
    )
