"""Exhaust the service's connection pool: hold its connections; record each refusal's pool state."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg_pool

from experiments.faults.held import HeldFault
from experiments.faults.window import Windows
from experiments.history import Op
from experiments.result import Verdict

__all__ = ["PoolHog", "PoolRefusals", "PoolWatch", "Refusal", "judge_refusals"]


@dataclass
class PoolHog(HeldFault):
    """Takes ``count`` connections out of a pool and keeps them for ``hold_s`` seconds.

    While held, callers get only what is left; with all of them held every call
    waits ``pool_timeout`` and fails ``Unavailable``. The connections go back to
    the pool untouched (idle) at the end. ``start()`` returns once they are held.
    """

    pool: psycopg_pool.ConnectionPool[Any]
    count: int
    hold_s: float = 1.0
    acquire_timeout_s: float = 10.0
    windows: Windows = field(default_factory=lambda: Windows("pool_exhausted"))
    held: int = 0
    error: BaseException | None = None
    _release: threading.Event = field(default_factory=threading.Event, repr=False)
    _ready: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> PoolHog:
        self._thread = threading.Thread(target=self._hold, name="nemesis-pool-hog", daemon=True)
        self._thread.start()
        self._ready.wait(self.acquire_timeout_s + 5)
        if self.error is not None:
            raise RuntimeError(f"could not take {self.count} pool connections: {self.error}")
        return self

    def __enter__(self) -> PoolHog:
        return self.start()

    def _hold(self) -> None:
        try:
            with ExitStack() as stack:
                for _ in range(self.count):
                    stack.enter_context(self.pool.connection(timeout=self.acquire_timeout_s))
                    self.held += 1
                with self.windows.active("exhausted"):
                    self._ready.set()
                    self._release.wait(self.hold_s)
        except BaseException as err:  # reported by start()
            self.error = err
        finally:
            self._ready.set()


@dataclass
class PoolWatch:
    """Samples a pool's stats every ``interval_s`` while a load runs (an observer, not a fault).

    A load with far more callers than connections can exhaust a pool by itself: a
    refusal outside the nemesis's window is then the pool doing its job, not a bug.
    The samples tell the two apart: ``no_idle_during(a, b)`` says whether, at some
    sample in ``[a, b]``, the pool had no idle connection. Bounded by
    ``max_duration_s`` and ``max_samples``; stops by itself.
    """

    stats: Callable[[], dict[str, int]]
    interval_s: float = 0.005
    max_duration_s: float = 120.0
    max_samples: int = 100_000
    #: (monotonic ns, idle connections, callers waiting)
    samples: list[tuple[int, int, int]] = field(default_factory=list)
    windows: Windows = field(default_factory=lambda: Windows("pool_watch"))
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> PoolWatch:
        self._thread = threading.Thread(target=self._loop, name="nemesis-pool-watch", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def no_idle_during(self, start_ns: int, end_ns: int) -> bool:
        return any(start_ns <= t <= end_ns and idle == 0 for t, idle, _ in self.samples)

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_duration_s
        while len(self.samples) < self.max_samples and time.monotonic() < deadline:
            st = self.stats()
            self.samples.append(
                (time.monotonic_ns(), st.get("pool_available", 0), st.get("requests_waiting", 0))
            )
            if self._stop.wait(self.interval_s):
                return


def _measures(pool: psycopg_pool.ConnectionPool[Any]) -> dict[str, int]:
    st = pool.get_stats()
    size = int(st.get("pool_size", 0))
    available = int(st.get("pool_available", 0))
    return {
        "pool_size": size,
        "available": available,
        "in_use": size - available,
        "waiting": int(st.get("requests_waiting", 0)),
    }


@dataclass(frozen=True)
class Refusal:
    """One connection request the pool refused: when its wait began and ended, the
    timeout it had, and the pool's state (size, idle, in use, waiting) at both ends."""

    wait_start_ns: int
    refused_ns: int
    timeout_s: float
    at_start: dict[str, int]
    at_refusal: dict[str, int]

    @property
    def waited_s(self) -> float:
        return (self.refused_ns - self.wait_start_ns) / 1e9

    def fault(self) -> str | None:
        """Why this refusal was not the pool doing its job, or None when it was.

        A pool gives an idle connection at once and hands a returned one to the first
        waiter, so a sound refusal waited out its whole timeout with no connection
        idle. The state is read just before the request and just after the refusal; a
        connection can come or go between a read and the pool's own decision, so
        one end without an idle connection is enough (both ends idle is not a race).
        """
        if self.at_start["available"] > 0 and self.at_refusal["available"] > 0:
            return (
                f"refused after {self.waited_s:.3f}s with {self.at_refusal['available']} of"
                f" {self.at_refusal['pool_size']} connections idle"
            )
        # 10 ms of grace: the pool's own clock check and ours are not the same instant.
        if self.waited_s < self.timeout_s - 0.01:
            return f"refused after {self.waited_s:.3f}s, before its {self.timeout_s:.3f}s timeout"
        return None

    def to_dict(self, origin_ns: int = 0) -> dict[str, Any]:
        return {
            "wait_start_s": round((self.wait_start_ns - origin_ns) / 1e9, 6),
            "waited_s": round(self.waited_s, 6),
            "timeout_s": self.timeout_s,
            "at_start": self.at_start,
            "at_refusal": self.at_refusal,
        }


@dataclass
class PoolRefusals:
    """Records every connection request a pool refuses, with the pool's state at that moment.

    ``start()`` wraps the pool's ``getconn`` (the one door the service takes to a
    connection); ``stop()`` puts it back. Bounded by ``max_records``. An observer,
    not a fault: its windows label nothing.
    """

    pool: psycopg_pool.ConnectionPool[Any]
    max_records: int = 100_000
    refusals: list[Refusal] = field(default_factory=list)
    windows: Windows = field(default_factory=lambda: Windows("pool_refusals"))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _installed: bool = field(default=False, repr=False)

    def start(self) -> PoolRefusals:
        if self._installed:
            return self
        inner = self.pool.getconn
        default_timeout = float(self.pool.timeout)

        def getconn(timeout: float | None = None) -> Any:
            at_start = _measures(self.pool)
            started = time.monotonic_ns()
            try:
                return inner(timeout)
            except psycopg_pool.PoolTimeout:
                refused = time.monotonic_ns()
                record = Refusal(
                    wait_start_ns=started,
                    refused_ns=refused,
                    timeout_s=default_timeout if timeout is None else float(timeout),
                    at_start=at_start,
                    at_refusal=_measures(self.pool),
                )
                with self._lock:
                    if len(self.refusals) < self.max_records:
                        self.refusals.append(record)
                raise

        self.pool.getconn = getconn  # type: ignore[method-assign]
        self._installed = True
        return self

    def stop(self) -> None:
        if self._installed:
            del self.pool.getconn  # the class's method shows through again
            self._installed = False


def judge_refusals(
    unavailable: list[Op], refusals: list[Refusal], *, name: str = "unavailable_only_when_exhausted"
) -> Verdict:
    """Each ``unavailable`` op is excused only by a refusal of its own, recorded during
    it, that the pool's state at that moment justifies (``Refusal.fault``).

    An op refused without a pool refusal inside it (the database timed out, say), or
    whose refusal came while connections sat idle or before its timeout, is a stray.
    """
    pending = sorted(refusals, key=lambda r: r.wait_start_ns)
    used: set[int] = set()
    stray: list[str] = []
    sound = 0
    for op in sorted(unavailable, key=lambda o: o.invoke_ns):
        match = next(
            (
                i
                for i, r in enumerate(pending)
                if i not in used
                and op.invoke_ns <= r.wait_start_ns
                and r.refused_ns <= op.complete_ns
            ),
            None,
        )
        if match is None:
            stray.append(f"op {op.op_id}: unavailable without a pool refusal during it")
            continue
        used.add(match)
        why = pending[match].fault()
        if why is None:
            sound += 1
        else:
            stray.append(f"op {op.op_id}: {why}")
    figures = {
        "unavailable": len(unavailable),
        "refusals_recorded": len(refusals),
        "sound": sound,
        "stray": len(stray),
        "max_idle_at_refusal": max((r.at_refusal["available"] for r in refusals), default=None),
        "max_waiting_at_refusal": max((r.at_refusal["waiting"] for r in refusals), default=None),
    }
    if stray:
        shown = "; ".join(stray[:5]) + (f" (and {len(stray) - 5} more)" if len(stray) > 5 else "")
        return Verdict(
            name, False, f"{len(stray)} of {len(unavailable)} refusals unsound: {shown}", figures
        )
    return Verdict(
        name,
        True,
        f"all {len(unavailable)} refusals came from the pool, each after its full timeout"
        " with no connection idle",
        figures,
    )
