"""Lock waits, sampled from ``pg_stat_activity``: how long a run's backends waited for locks.

A sampler thread asks PostgreSQL every ``interval_s`` which backends of the run (found
by their ``application_name`` prefix) are waiting on a heavyweight lock
(``wait_event_type = 'Lock'``: a row's ``tuple`` or ``transactionid``, an ``advisory``
lock). Each sample counts the waiters; the time waited is the sum over samples of
waiters x the measured time since the previous sample, in backend-seconds.

Why sampling and not ``log_lock_waits``: that logs only waits longer than
``deadlock_timeout`` (1 s by default), and a stampede's waits last milliseconds;
lowering ``deadlock_timeout`` for the whole server changes what it measures. Sampling
is an estimate with the interval as its resolution (a wait shorter than one interval
is seen in proportion to its length, on average), and costs one small query per
interval on its own connection.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = ["LockWaitSampler", "LockWaits"]

_QUERY = (
    "SELECT wait_event, count(*) FROM pg_stat_activity"
    " WHERE wait_event_type = 'Lock' AND left(application_name, %s) = %s"
    " AND pid <> pg_backend_pid() GROUP BY wait_event"
)


@dataclass
class LockWaits:
    """What the samples saw: backend-seconds waiting, the peak, and by which lock."""

    samples: int = 0
    sampled_s: float = 0.0
    #: Sum over samples of (backends waiting x seconds since the previous sample).
    wait_s: float = 0.0
    #: Most backends seen waiting at once.
    peak: int = 0
    #: Samples x waiters per wait event (``tuple``, ``transactionid``, ``advisory``, ...).
    by_event: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    @property
    def interval_ms(self) -> float | None:
        """The mean measured time between samples."""
        return 1000 * self.sampled_s / self.samples if self.samples else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "interval_ms": None if self.interval_ms is None else round(self.interval_ms, 3),
            "wait_s": round(self.wait_s, 6),
            "peak": self.peak,
            "by_event": dict(self.by_event),
            "error": self.error,
        }


class LockWaitSampler:
    """Samples the lock waits of backends whose application_name starts with ``prefix``.

    Use as a context manager around a run; ``waits`` holds the figures after it. The
    loop is bounded by ``max_s`` whatever happens; a sampler that cannot connect or
    query records its error and stops (the run is not affected).
    """

    def __init__(
        self, url: str, prefix: str, *, interval_s: float = 0.01, max_s: float = 300.0
    ) -> None:
        self.url = url
        self.prefix = prefix[:63]
        self.interval_s = interval_s
        self.max_s = max_s
        self.waits = LockWaits()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> LockWaitSampler:
        self._thread = threading.Thread(target=self._loop, name="lock-wait-sampler", daemon=True)
        self._thread.start()
        # The first sample is taken before the run starts, so none of its waits is missed.
        self._ready.wait(10.0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10.0)

    def _loop(self) -> None:
        w = self.waits
        try:
            with psycopg.connect(
                self.url, autocommit=True, connect_timeout=5, application_name="lock-wait-sampler"
            ) as conn:
                deadline = time.monotonic() + self.max_s
                last = time.monotonic()
                params = (len(self.prefix), self.prefix)
                while True:
                    rows = conn.execute(_QUERY, params).fetchall()
                    now = time.monotonic()
                    waiting = 0
                    for event, n in rows:
                        w.by_event[str(event)] += int(n)
                        waiting += int(n)
                    if self._ready.is_set():  # the first sample only starts the clock
                        w.samples += 1
                        w.sampled_s += now - last
                        w.wait_s += waiting * (now - last)
                        w.peak = max(w.peak, waiting)
                    last = now
                    self._ready.set()
                    if self._stop.wait(self.interval_s) or now > deadline:
                        break
        except psycopg.Error as err:
            w.error = f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        finally:
            self._ready.set()
