"""Cancel operations in flight: the service's running statements, or one connection's."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = ["CancelAfter", "cancel_backends"]

NEMESIS_APP = "coupon-lab-nemesis"


#: How long ``cancel_backends(waiting_only=True)`` watches the transactions it
#: signalled for a cancel PostgreSQL dropped, and how often it looks.
RESIGNAL_WITHIN_S = 0.3
_RESIGNAL_EVERY_S = 0.01


def cancel_backends(url: str, application_name: str, *, waiting_only: bool = False) -> list[int]:
    """pg_cancel_backend on the service's backends running a statement; returns their pids.

    ``waiting_only`` picks those waiting on a lock (a claim stuck behind a held row) and
    makes sure each of their transactions is cancelled. A cancel ends the statement with
    ``QueryCanceled`` and aborts its transaction; the connection stays usable. But it
    cancels only a statement that is running when the signal lands: a waiter whose
    lock came free in between (the advisory strategy: the cancelled holder of the
    advisory lock lets the next waiter take it) is between two statements then, and
    PostgreSQL drops the cancel; its claim went on to wait on the row and succeeded
    after the release (lock_contention, advisory: 12 signalled, 11 unavailable, in 5
    of 20 runs). So a signalled transaction seen waiting on a lock again (the same
    backend and ``xact_start``) is signalled again, for ``RESIGNAL_WITHIN_S``.
    """
    sql = (
        "SELECT pid, xact_start FROM pg_stat_activity"
        " WHERE application_name = %s AND state = 'active' AND pid <> pg_backend_pid()"
    )
    if waiting_only:
        sql += " AND wait_event_type = 'Lock'"
    with psycopg.connect(
        url, autocommit=True, connect_timeout=5, application_name=NEMESIS_APP
    ) as conn:
        found = {int(str(pid)): start for pid, start in conn.execute(sql, (application_name,))}
        signalled = _signal(conn, list(found))
        if waiting_only and signalled:
            end = time.monotonic() + RESIGNAL_WITHIN_S
            while time.monotonic() < end:
                time.sleep(_RESIGNAL_EVERY_S)
                alive = [
                    (int(str(pid)), state, wait)
                    for pid, start, state, wait in conn.execute(
                        "SELECT pid, xact_start, state, wait_event_type FROM pg_stat_activity"
                        " WHERE pid = ANY(%s::int[])",
                        (signalled,),
                    )
                    if start is not None and start == found.get(int(str(pid)))
                ]
                if not alive:
                    break  # every signalled transaction has ended
                again = [pid for pid, state, wait in alive if state == "active" and wait == "Lock"]
                _signal(conn, again)
    return sorted(signalled)


def _signal(conn: psycopg.Connection[Any], pids: list[int]) -> list[int]:
    """pg_cancel_backend on ``pids``; the pids it signalled."""
    if not pids:
        return []
    rows = conn.execute(
        "SELECT pid, pg_cancel_backend(pid) FROM unnest(%s::int[]) AS pid", (pids,)
    ).fetchall()
    return [int(str(pid)) for pid, ok in rows if ok is True]


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
