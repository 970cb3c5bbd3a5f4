"""Kill the service's database backends: once, repeatedly during a load, or mid-claim."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field

import psycopg

from experiments.faults.threaded import ThreadedFault
from experiments.faults.window import Windows

__all__ = [
    "BackendKiller",
    "ClaimPause",
    "SlowAfterInsert",
    "backend_pids",
    "backend_states",
    "terminate_backends",
]

NEMESIS_APP = "coupon-lab-nemesis"


def _admin(url: str) -> psycopg.Connection[tuple[object, ...]]:
    return psycopg.connect(url, autocommit=True, connect_timeout=5, application_name=NEMESIS_APP)


def backend_pids(url: str, application_name: str, *, state: str | None = None) -> list[int]:
    """Pids of live backends named ``application_name`` (optionally in one ``state``)."""
    sql = "SELECT pid FROM pg_stat_activity WHERE application_name = %s AND pid <> pg_backend_pid()"
    args: list[object] = [application_name]
    if state is not None:
        sql += " AND state = %s"
        args.append(state)
    with _admin(url) as conn:
        return sorted(int(str(r[0])) for r in conn.execute(sql + " ORDER BY pid", args).fetchall())


def backend_states(url: str, application_name: str) -> dict[int, str]:
    """pid -> state (``active``, ``idle``, ``idle in transaction``) of the service's backends."""
    with _admin(url) as conn:
        rows = conn.execute(
            "SELECT pid, coalesce(state, '') FROM pg_stat_activity"
            " WHERE application_name = %s AND pid <> pg_backend_pid()",
            (application_name,),
        ).fetchall()
    return {int(str(pid)): str(state) for pid, state in rows}


def terminate_backends(
    url: str, application_name: str, *, state: str | None = None, limit: int | None = None
) -> list[int]:
    """pg_terminate_backend on the service's backends; returns the pids it terminated.

    ``limit`` kills only the first few (by pid), to hurt a load without emptying
    the pool at once.
    """
    pids = backend_pids(url, application_name, state=state)
    if limit is not None:
        pids = pids[:limit]
    killed: list[int] = []
    with _admin(url) as conn:
        for pid in pids:
            row = conn.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,)).fetchone()
            if row is not None and row[0] is True:
                killed.append(pid)
    return killed


@dataclass
class BackendKiller(ThreadedFault):
    """Terminates the service's backends every ``interval_s`` (± seeded jitter) during a load.

    Bounded: at most ``max_kills`` rounds and ``max_duration_s`` seconds; ``stop()``
    (or leaving the ``with`` block) ends it and joins its thread. Each round is a
    short window named ``kill`` so ops around it can be labelled.
    """

    url: str
    application_name: str
    interval_s: float = 0.3
    jitter_s: float = 0.1
    max_kills: int = 5
    max_duration_s: float = 10.0
    per_round: int | None = None
    seed: int = 0
    #: How long a round waits for the service to have a backend before it kills.
    backend_wait_s: float = 2.0
    windows: Windows = field(default_factory=lambda: Windows("backend_kill"))
    killed: list[int] = field(default_factory=list)
    #: State of each backend when it was killed: how many died mid-transaction.
    killed_states: dict[str, int] = field(default_factory=dict)
    rounds: int = 0
    #: Backends killed in each round, in order (a round that found none counts 0).
    killed_per_round: list[int] = field(default_factory=list)
    #: Set once the loop has ended (its rounds done, its bound spent, or stopped).
    done: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    THREAD = "nemesis-backend-kill"

    def _join_s(self) -> float:
        return self.max_duration_s + 10

    def _run(self) -> None:
        try:
            self._rounds()
        finally:
            self.done.set()

    def _rounds(self) -> None:
        rng = random.Random(self.seed)
        deadline = time.monotonic() + self.max_duration_s
        while self.rounds < self.max_kills and time.monotonic() < deadline:
            wait = max(0.0, self.interval_s + rng.uniform(-self.jitter_s, self.jitter_s))
            if self._stop.wait(wait) or not self._await_backend(deadline):
                return
            with self.windows.active("kill"):
                try:
                    states = backend_states(self.url, self.application_name)
                    pids = terminate_backends(self.url, self.application_name, limit=self.per_round)
                except psycopg.Error:  # the database itself may be down: try next round
                    states, pids = {}, []
            self.killed.extend(pids)
            self.killed_per_round.append(len(pids))
            for pid in pids:
                st = states.get(pid, "unknown")
                self.killed_states[st] = self.killed_states.get(st, 0) + 1
            self.rounds += 1

    def _await_backend(self, deadline: float) -> bool:
        """Wait until the service has a backend to kill (bounded by ``backend_wait_s``
        and the loop's deadline); False when stopped. A round right after one that
        emptied the pool would otherwise find nothing (over HTTP on a loaded machine,
        measured: rounds of [4, 0, 6, 5]): a kill of nothing is a fault that did not
        happen. A service that never reconnects still shows: the round kills 0."""
        end = min(deadline, time.monotonic() + self.backend_wait_s)
        while True:
            try:
                if backend_pids(self.url, self.application_name):
                    return True
            except psycopg.Error:  # the database itself may be down: the round says so
                return True
            if time.monotonic() >= end:
                return True
            if self._stop.wait(0.01):
                return False


@dataclass
class ClaimPause:
    """A service fault hook that parks chosen claims at ``after_insert``, lock held.

    The claim has inserted its row and holds the coupon's row lock (row_lock) or
    advisory lock when it pauses; the test can then kill its backend, cancel it or
    time it out, and ``release()`` lets it go on (to find its connection gone).
    Bounded: a paused claim waits at most ``max_pause_s``.
    """

    pauses: int = 1
    max_pause_s: float = 10.0
    paused: threading.Event = field(default_factory=threading.Event)
    _release: threading.Event = field(default_factory=threading.Event, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    hits: int = 0

    def __call__(self, point: str) -> None:
        if point != "after_insert":
            return
        with self._lock:
            if self.hits >= self.pauses:
                return
            self.hits += 1
        self.paused.set()
        self._release.wait(self.max_pause_s)

    def wait_paused(self, timeout: float = 10.0) -> bool:
        return self.paused.wait(timeout)

    def release(self) -> None:
        self._release.set()


@dataclass
class SlowAfterInsert:
    """A fault hook that keeps each claim's transaction open ``delay_s`` after its insert.

    It widens the window in which a kill or a reset lands mid-transaction, so a
    connection drop tests the rollback of a half-made claim, not only idle sockets.
    """

    delay_s: float = 0.005

    def __call__(self, point: str) -> None:
        if point == "after_insert":
            time.sleep(self.delay_s)
