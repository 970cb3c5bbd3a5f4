"""Watch the service's transactions contend in the database: lock waits under a stampede.

A stampede in the history (every claim in flight at once) may still be serial inside the
service: one global lock around every claim keeps the intervals overlapping and hides
the race a known-racy strategy must show. What the database sees cannot be hidden so:
``LockWaits`` polls ``pg_stat_activity`` for the service's backends (by its
application_name) waiting on a lock, and for those in a statement or a transaction at
once, while the load runs. A global lock keeps at most one claim in the database at a
time; a stampede that reached it has several at once.
"""

from __future__ import annotations

import contextlib
import random
import threading
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from experiments.faults.backends import NEMESIS_APP
from experiments.faults.window import Windows
from experiments.result import Verdict

__all__ = ["LockWaits"]


#: The advisory lock space of the watcher (two-key form: apart from the one-key
#: ``pg_advisory_xact_lock`` of the advisory strategy).
_LOCK_CLASS = 0x6C61
_SAMPLER = """
DO $$
DECLARE
  w int; b int; n int := 0; nw int := 0; pw int := 0; pb int := 0;
  deadline timestamptz := clock_timestamp() + make_interval(secs => {bound_s});
BEGIN
  LOOP
    EXIT WHEN pg_try_advisory_lock({cls}, {key}) OR clock_timestamp() > deadline;
    PERFORM pg_stat_clear_snapshot();
    SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'),
           count(*) FILTER (WHERE state IN ('active', 'idle in transaction'))
      INTO w, b FROM pg_stat_activity WHERE application_name = {app};
    n := n + 1;
    IF w > 0 THEN nw := nw + 1; END IF;
    pw := greatest(pw, w);
    pb := greatest(pb, b);
    IF {every_s} > 0 THEN PERFORM pg_sleep({every_s}); END IF;
  END LOOP;
  RAISE NOTICE 'lock_waits % % % %', n, nw, pw, pb;
END $$
"""


@dataclass
class LockWaits:
    """Samples the service's backends from ``start()`` to ``stop()``; see the module.

    The sampling loop runs inside PostgreSQL (a ``DO`` block, a sample every
    ``every_s``): polled from a thread of the lab's process it took 12 to 40 samples in
    a whole run and missed the stampede of the one-statement strategies (the GIL
    shared with the workers). ``stop()`` releases an advisory lock the loop tries
    each turn; the loop reports its figures as a notice. Bounded by ``bound_s``.
    """

    url: str
    application_name: str
    #: Between two samples (0: none; a sample is a scan of pg_stat_activity, ~20 us).
    every_s: float = 0.0
    bound_s: float = 120.0
    windows: Windows = field(default_factory=lambda: Windows("lock_waits"))
    samples: int = 0
    #: Samples that saw a service backend waiting on a lock, and the most at once.
    waiting_samples: int = 0
    peak_waiting: int = 0
    #: The most service backends in a statement or a transaction at once.
    peak_busy: int = 0
    error: str | None = None
    _key: int = field(default_factory=lambda: random.getrandbits(31), repr=False)
    _holder: psycopg.Connection[Any] | None = field(default=None, repr=False)
    _ready: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    def start(self) -> LockWaits:
        self._holder = psycopg.connect(
            self.url, autocommit=True, connect_timeout=5, application_name=NEMESIS_APP
        )
        self._holder.execute("SELECT pg_advisory_lock(%s, %s)", (_LOCK_CLASS, self._key))
        self._thread = threading.Thread(target=self._sample, name="nemesis-lock-waits", daemon=True)
        self._thread.start()
        self._ready.wait(10.0)
        return self

    def stop(self) -> None:
        if self._holder is not None:
            with contextlib.suppress(psycopg.Error):
                self._holder.execute("SELECT pg_advisory_unlock(%s, %s)", (_LOCK_CLASS, self._key))
            self._holder.close()
            self._holder = None
        if self._thread is not None:
            self._thread.join(timeout=self.bound_s + 10)

    def _sample(self) -> None:
        sampler = sql.SQL(_SAMPLER).format(
            bound_s=sql.Literal(self.bound_s),
            cls=sql.Literal(_LOCK_CLASS),
            key=sql.Literal(self._key),
            app=sql.Literal(self.application_name),
            every_s=sql.Literal(self.every_s),
        )
        try:
            with psycopg.connect(
                self.url, autocommit=True, connect_timeout=5, application_name=NEMESIS_APP
            ) as conn:
                notices: list[str] = []
                conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
                self._ready.set()
                conn.execute(sampler)
                found = [m for m in notices if m.startswith("lock_waits ")]
                if not found:
                    self.error = "the sampler reported nothing"
                    return
                n, nw, pw, pb = (int(x) for x in found[-1].split()[1:])
                self.samples, self.waiting_samples = n, nw
                self.peak_waiting, self.peak_busy = pw, pb
        except psycopg.Error as err:  # the verdict says it could not watch: never a pass
            self.error = f"{type(err).__name__}: {err}"
        finally:
            self._ready.set()

    def verdict(self, name: str = "stampede_contended", *, alongside: int = 0) -> Verdict:
        """Validity: the stampede reached the database as concurrent transactions, at
        least two of its claims in a statement or a transaction at once (beyond the
        ``alongside`` backends another part of the plan may keep busy meanwhile).
        Failing it, the run tested nothing; unable to watch, it is unknown."""
        need = alongside + 2
        figures = {
            "peak_busy": self.peak_busy,
            "needed": need,
            "peak_waiting": self.peak_waiting,
            "samples": self.samples,
            "waiting_samples": self.waiting_samples,
        }
        if self.error is not None or self.samples == 0:
            return Verdict(
                name,
                None,
                f"could not watch the database: {self.error or 'no sample'}",
                figures,
                validity=True,
            )
        return Verdict(
            name,
            self.peak_busy >= need,
            f"at most {self.peak_busy} service backends busy at once (needs {need}: two of "
            f"the stampede's claims{f' beside {alongside} other' if alongside else ''}); "
            f"{self.peak_waiting} waiting on a lock at most, in {self.samples} samples",
            figures,
            validity=True,
        )
