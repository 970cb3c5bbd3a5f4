"""Crash and restart server worker processes: SIGKILL at seeded times, or a rolling SIGTERM.

``WorkerKiller`` needs a supervised ``ServerGroup`` (``coupon_core.workers``): it
kills one worker at a time, then measures, per kill, how long PostgreSQL took to
drop the dead worker's backends (its connections are closed by the kernel with the
process; a backend notices when it next reads its socket), how long the supervisor
took to have a replacement ready, and how long until a request on a fresh
connection was answered by the replacement (the ``x-coupon-worker`` header names
the process that answered). After the kills it may roll a graceful restart (each
worker replaced, the new one ready before the old one gets SIGTERM) through the
group. Windows: ``kill`` (SIGKILL to the replacement's ready line) and ``rolling``.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Self

import httpx
import psycopg

from coupon_core.workers import WORKER_HEADER, ServerGroup
from experiments.faults.backends import NEMESIS_APP
from experiments.faults.threaded import ThreadedFault
from experiments.faults.window import Windows

__all__ = ["KillRecord", "WorkerKiller"]

#: Polling the dead worker's backends: each poll is one query on a kept connection.
_BACKEND_POLL_S = 0.005
_PROBE_EVERY_S = 0.01


@dataclass
class KillRecord:
    """What one SIGKILL did, with the times (seconds after the kill) that were measured."""

    pid: int
    kill_ns: int
    backends_before: int = 0
    #: Of those, the ones in a statement or a transaction when the kill went out.
    busy_before: int = 0
    #: From the victim's choice to the kill: the wait for a claim in flight on it.
    waited_busy_s: float = 0.0
    #: Until pg_stat_activity showed none of its backends (None: not within the bound).
    backends_gone_s: float | None = None
    new_pid: int | None = None
    #: Until the supervisor's replacement said ``ready``.
    restart_ready_s: float | None = None
    ready_ns: int | None = None
    #: Until a probe on a fresh connection got a 200 from the replacement.
    first_ok_on_new_s: float | None = None
    probes: int = 0
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "backends_before": self.backends_before,
            "busy_before": self.busy_before,
            "waited_busy_s": _round(self.waited_busy_s),
            "backends_gone_s": _round(self.backends_gone_s),
            "new_pid": self.new_pid,
            "restart_ready_s": _round(self.restart_ready_s),
            "first_ok_on_new_s": _round(self.first_ok_on_new_s),
            "probes": self.probes,
            "error": self.error,
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def _backend_count(conn: psycopg.Connection[Any], name: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
    ).fetchone()
    return int(str(row[0])) if row is not None else 0


def _busy_count(conn: psycopg.Connection[Any], name: str) -> int:
    """The worker's backends in a statement or a transaction: a request in flight."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s"
        " AND state IN ('active', 'idle in transaction')",
        (name,),
    ).fetchone()
    return int(str(row[0])) if row is not None else 0


@dataclass
class WorkerKiller(ThreadedFault):
    """SIGKILLs ``kills`` workers of ``group`` one after another, at seeded times.

    Before each kill it waits ``first_s`` (the first) or ``gap_s`` after the previous
    replacement's recovery, each ± ``jitter_s`` drawn from ``seed``; the victim is a
    seeded choice among the current workers, killed once one of its backends is busy
    (a request in flight on it). ``rolling``: a graceful rolling restart
    after the kills. Bounded: every wait has its bound (``bound_s``), ``stop()`` ends
    it early and joins its thread. ``done`` is set when it has finished.
    """

    group: ServerGroup
    database_url: str
    application_name: str
    kills: int = 1
    seed: int = 0
    first_s: float = 0.4
    gap_s: float = 0.4
    jitter_s: float = 0.15
    rolling: bool = True
    bound_s: float = 30.0
    windows: Windows = field(default_factory=lambda: Windows("process_crash"))
    records: list[KillRecord] = field(default_factory=list)
    rolling_pids: list[tuple[int, int | None]] = field(default_factory=list)
    rolling_s: float | None = None
    error: str | None = None
    done: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    THREAD = "nemesis-worker-kill"

    def start(self) -> Self:
        if not self.group.supervised:
            raise ValueError("WorkerKiller needs a supervised ServerGroup (it would not come back)")
        return super().start()

    def _join_s(self) -> float:
        # Each step is bounded by bound_s; a rolling restart by the group's stop bound.
        return (self.kills * 3 + 2) * self.bound_s

    def _run(self) -> None:
        rng = random.Random(self.seed)
        try:
            with psycopg.connect(
                self.database_url, autocommit=True, connect_timeout=5, application_name=NEMESIS_APP
            ) as conn:
                for i in range(self.kills):
                    base = self.first_s if i == 0 else self.gap_s
                    if self._stop.wait(max(0.0, base + rng.uniform(-self.jitter_s, self.jitter_s))):
                        return
                    pids = sorted(self.group.pids)
                    self.records.append(self._kill(conn, rng.choice(pids)))
                if self.rolling and not self._stop.wait(
                    max(0.0, self.gap_s + rng.uniform(-self.jitter_s, self.jitter_s))
                ):
                    self.windows.open("rolling")
                    t0 = time.monotonic()
                    try:
                        made = self.group.rolling_restart()
                    finally:
                        self.windows.close("rolling")
                    self.rolling_s = time.monotonic() - t0
                    self.rolling_pids = [(r.old_pid, r.new_pid) for r in made]
        except Exception as err:  # kept for the scenario's verdicts; never lost in a thread
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self.done.set()

    def _kill(self, conn: psycopg.Connection[Any], pid: int) -> KillRecord:
        name = f"{self.application_name}-{pid}"[:63]
        # Timed to a request in flight on the victim: a kill before the load began (the
        # seeded wait can end before the workers are released) or in a lull cuts
        # nothing and tests nothing. Bounded; the scenario judges whether it cut a claim.
        t0 = time.monotonic()
        busy = 0
        while time.monotonic() - t0 < self.bound_s and not self._stop.is_set():
            busy = _busy_count(conn, name)
            if busy > 0:
                break
            time.sleep(_BACKEND_POLL_S)
        waited = time.monotonic() - t0
        before = _backend_count(conn, name)
        self.windows.open("kill")
        kill_ns = time.monotonic_ns()
        os.kill(pid, signal.SIGKILL)
        rec = KillRecord(
            pid, kill_ns, backends_before=before, busy_before=busy, waited_busy_s=waited
        )
        try:
            deadline = time.monotonic() + self.bound_s
            while time.monotonic() < deadline:
                if _backend_count(conn, name) == 0:
                    rec.backends_gone_s = (time.monotonic_ns() - kill_ns) / 1e9
                    break
                time.sleep(_BACKEND_POLL_S)
            restart = self.group.wait_restart(pid, self.bound_s)
            if restart is None or restart.new_pid is None or restart.ready_ns is None:
                rec.error = "not restarted" if restart is None else (restart.error or "no ready")
                return rec
            rec.new_pid, rec.ready_ns = restart.new_pid, restart.ready_ns
            rec.restart_ready_s = (restart.ready_ns - kill_ns) / 1e9
        finally:
            self.windows.close("kill")
        rec.first_ok_on_new_s, rec.probes = self._probe(rec.new_pid, kill_ns)
        return rec

    def _probe(self, new_pid: int, kill_ns: int) -> tuple[float | None, int]:
        """GET /health on fresh connections until the replacement answers 200."""
        probes = 0
        deadline = time.monotonic() + self.bound_s
        while time.monotonic() < deadline and not self._stop.is_set():
            probes += 1
            try:
                # A new connection each time: the kernel spreads them over the listeners.
                r = httpx.get(
                    f"{self.group.url}/health",
                    timeout=5.0,
                    trust_env=False,
                    headers={"connection": "close"},
                )
                if r.status_code == 200 and r.headers.get(WORKER_HEADER) == str(new_pid):
                    return (time.monotonic_ns() - kill_ns) / 1e9, probes
            except httpx.HTTPError:
                pass
            time.sleep(_PROBE_EVERY_S)
        return None, probes
