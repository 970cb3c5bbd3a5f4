"""Exhaust the service's connection pool: hold its connections, or swamp it with callers."""

from __future__ import annotations

import threading
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

import psycopg_pool

from experiments.faults.window import Windows

__all__ = ["PoolHog"]


@dataclass
class PoolHog:
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

    def stop(self) -> None:
        self._release.set()
        if self._thread is not None:
            self._thread.join(timeout=self.hold_s + 10)
        self.windows.close_all()

    def wait(self) -> None:
        if self._thread is not None:
            self._thread.join(timeout=self.hold_s + 10)

    def __enter__(self) -> PoolHog:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

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
