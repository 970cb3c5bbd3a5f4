"""Which notebooks run side by side, how many at once, and the gate that keeps to it.

A scenario shares the run's database with others by design (each keys its coupons
with a run-unique prefix), so the catalog's notebooks can run side by side. Some
cannot, and run alone (``alone_reason``):

- a scenario that needs more than the tables (``Scenario.needs``): it stops or
  restarts a database process (``database_restart``), starts a cluster of its own
  and kills and promotes its nodes (``failover``, ``stale_reads``), kills server
  processes (``process_crash``), terminates backends (``connection_drop``), or holds
  locks, slows queries, exhausts a pool or cuts the network under a fault whose
  checks are bounds in seconds (``timeouts_bounded``: the timeout + 1 s;
  ``ops_bounded``; ``service_recovered_in_bound``): a neighbour's load on the same
  cores would be read as the service's slowness, and a verdict must not change
  because the suite ran notebooks side by side;
- one in ``HEAVY``: it takes the machine by itself;
- a notebook of no registered scenario (sweep, strategies, detection, performance):
  what it needs is unknown, and performance measures throughput.

How many at once (``default_jobs``): one per two cores the process may use. A
notebook keeps about two busy (its kernel's worker threads and the PostgreSQL
backends they drive); more at once only makes each slower and its stampede less
likely to collide (the pipeline then draws it again: time lost, not a verdict).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

from experiments.suite.discover import Job

__all__ = ["HEAVY", "Gate", "alone_reason", "default_jobs"]

#: Scenarios that only read the tables, yet load the machine alone: scale drives
#: stampedes of 100, 200 and 500 workers, each on a pool of its own.
HEAVY: dict[str, str] = {"scale": "stampedes of up to 500 workers take the machine"}


def default_jobs() -> int:
    """Notebooks at once by default: one per two usable cores, at least one."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, cores // 2)


def alone_reason(job: Job) -> str | None:
    """Why ``job`` must run with no other notebook beside it; None when it can share."""
    from experiments.scenarios import NEED, SCENARIOS

    name = job.notebook.scenario
    scenario = SCENARIOS.get(name)
    if scenario is None:
        return "not a registered scenario: what it needs is unknown"
    if name in HEAVY:
        return HEAVY[name]
    more = [n for n in scenario.needs if n != "tables"]
    if more:
        return "it needs " + "; ".join(f"{n}: {NEED[n]}" for n in more)
    return None


class Gate:
    """Up to ``width`` shared notebooks at once, or one alone.

    An alone notebook waits for those running to end, and none starts while it waits
    (no starving it behind a stream of shared ones).
    """

    def __init__(self, width: int) -> None:
        self.width = max(1, width)
        self._cond = threading.Condition()
        self._running = 0
        self._alone = False
        self._waiting_alone = 0

    @contextlib.contextmanager
    def hold(self, alone: bool) -> Iterator[None]:
        with self._cond:
            if alone:
                self._waiting_alone += 1
                try:
                    self._cond.wait_for(lambda: self._running == 0)
                finally:
                    self._waiting_alone -= 1
                self._alone = True
            else:
                self._cond.wait_for(
                    lambda: (
                        not self._alone and self._waiting_alone == 0 and self._running < self.width
                    )
                )
            self._running += 1
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                if alone:
                    self._alone = False
                self._cond.notify_all()

    @property
    def running(self) -> int:
        with self._cond:
            return self._running
