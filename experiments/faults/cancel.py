"""Cancel operations in flight: the service's running statements, or one connection's."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = ["CancelAfter", "cancel_backends"]

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
