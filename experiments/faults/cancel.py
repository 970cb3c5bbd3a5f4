"""Cancel operations in flight: the service's running statements, or one connection's."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

from experiments.faults.window import Windows

__all__ = ["CancelAfter", "Canceller", "cancel_backends"]

NEMESIS_APP = "coupon-lab-nemesis"


def cancel_backends(url: str, application_name: str, *, waiting_only: bool = False) -> list[int]:
    """pg_cancel_backend on the service's backends running a statement; returns their pids.

    ``waiting_only`` picks those waiting on a lock (a claim stuck behind a held row).
    A cancel ends the statement with ``QueryCanceled`` and aborts its transaction;
    the connection stays usable.
    """
    sql = (
        "SELECT pid, pg_cancel_backend(pid) FROM pg_stat_activity"
        " WHERE application_name = %s AND state = 'active' AND pid <> pg_backend_pid()"
    )
    if waiting_only:
        sql += " AND wait_event_type = 'Lock'"
    with psycopg.connect(
        url, autocommit=True, connect_timeout=5, application_name=NEMESIS_APP
    ) as conn:
        rows = conn.execute(sql, (application_name,)).fetchall()
    return sorted(int(str(pid)) for pid, ok in rows if ok is True)


@dataclass
class Canceller:
    """Cancels the service's running statements every ``interval_s`` (± seeded jitter).

    Bounded by ``max_rounds`` and ``max_duration_s``; each round is a window ``cancel``.
    """

    url: str
    application_name: str
    interval_s: float = 0.1
    jitter_s: float = 0.05
    waiting_only: bool = False
    max_rounds: int = 20
    max_duration_s: float = 10.0
    seed: int = 0
    windows: Windows = field(default_factory=lambda: Windows("cancel"))
    cancelled: list[int] = field(default_factory=list)
    rounds: int = 0
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> Canceller:
        self._thread = threading.Thread(target=self._loop, name="nemesis-cancel", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.max_duration_s + 10)
        self.windows.close_all()

    def __enter__(self) -> Canceller:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _loop(self) -> None:
        rng = random.Random(self.seed)
        deadline = time.monotonic() + self.max_duration_s
        while self.rounds < self.max_rounds and time.monotonic() < deadline:
            if self._stop.wait(
                max(0.0, self.interval_s + rng.uniform(-self.jitter_s, self.jitter_s))
            ):
                return
            with self.windows.active("cancel"):
                try:
                    pids = cancel_backends(
                        self.url, self.application_name, waiting_only=self.waiting_only
                    )
                except psycopg.Error:
                    pids = []
            self.cancelled.extend(pids)
            self.rounds += 1


@dataclass
class CancelAfter:
    """Cancels whatever ``conn`` runs after ``delay_s`` (psycopg's own cancel request)."""

    conn: psycopg.Connection[Any]
    delay_s: float
    fired_at: float | None = None
    _timer: threading.Timer | None = field(default=None, repr=False)

    def _fire(self) -> None:
        self.fired_at = time.monotonic()
        self.conn.cancel_safe(timeout=5.0)

    def __enter__(self) -> CancelAfter:
        self._timer = threading.Timer(self.delay_s, self._fire)
        self._timer.daemon = True
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer.join(timeout=10)
