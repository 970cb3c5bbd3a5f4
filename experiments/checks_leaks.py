"""The leak check every scenario runs: pool idle, no lab thread, server or backend left."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg

from experiments.result import Verdict

__all__ = ["ThreadBaseline", "check_leaks", "pool_idle"]


def pool_idle(pool_stats: dict[str, int]) -> bool:
    """Every connection the pool opened is back in it, and nobody waits for one."""
    return pool_stats.get("requests_waiting", 0) == 0 and pool_stats.get(
        "pool_available", 0
    ) == pool_stats.get("pool_size", 0)


@dataclass
class ThreadBaseline:
    """The threads alive before a run; anything new still alive after it is a leak."""

    idents: frozenset[int] = field(
        default_factory=lambda: frozenset(t.ident for t in threading.enumerate() if t.ident)
    )

    def new_threads(self) -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.ident not in self.idents and t.is_alive()]


def _service_backends(url: str, application_name: str) -> int:
    # Server worker processes name theirs <application_name>-<pid>: theirs count too.
    pattern = application_name.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE application_name = %s OR application_name LIKE %s",
            (application_name, pattern + "-%"),
        ).fetchone()
    return int(str(row[0])) if row is not None else 0


def check_leaks(
    baseline: ThreadBaseline,
    *,
    pool_stats: dict[str, int] | None = None,
    db_url: str | None = None,
    application_name: str | None = None,
    ignore_threads: Iterable[str] = (),
    timeout_s: float = 5.0,
) -> Verdict:
    """Verdict ``no_leaks``: wait up to ``timeout_s`` for stray threads and backends to end.

    Call it with the stats of the service's pool taken *before* closing the
    service (every connection returned, idle) and after the service and server
    were closed (no new thread alive, and with ``db_url`` no backend left under the
    service's ``application_name``).
    """
    ignore = tuple(ignore_threads)
    deadline = time.monotonic() + timeout_s
    threads: list[threading.Thread] = []
    backends = 0
    while True:
        threads = [
            t for t in baseline.new_threads() if not any(t.name.startswith(p) for p in ignore)
        ]
        backends = _service_backends(db_url, application_name) if db_url and application_name else 0
        if (not threads and backends == 0) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    idle = True if pool_stats is None else pool_idle(pool_stats)
    figures: dict[str, Any] = {
        "threads_left": sorted(t.name for t in threads),
        "backends_left": backends,
        "pool": dict(pool_stats or {}),
        "pool_idle": idle,
    }
    problems = []
    if not idle:
        problems.append(
            f"pool not idle: {pool_stats.get('pool_size', 0) - pool_stats.get('pool_available', 0)}"
            f" in use, {pool_stats.get('requests_waiting', 0)} waiting"
            if pool_stats
            else "pool not idle"
        )
    if threads:
        problems.append(
            f"{len(threads)} threads left: {', '.join(sorted(t.name for t in threads))}"
        )
    if backends:
        problems.append(f"{backends} service backends left on the database")
    if problems:
        return Verdict("no_leaks", False, "; ".join(problems), figures)
    return Verdict("no_leaks", True, "pool idle, no thread, server or backend left behind", figures)
