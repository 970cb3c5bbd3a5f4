"""Exhaust the service's connection pool: hold its connections; watch how full it is."""

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

__all__ = ["PoolHog", "PoolWatch"]


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
