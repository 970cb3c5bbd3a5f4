"""schedule.Gate with real threads and recorded intervals; which notebooks must run alone."""

from __future__ import annotations

import threading
import time

import pytest

from experiments.suite import discover, plan_jobs
from experiments.suite.schedule import Gate, alone_reason, default_jobs

HOLD_S = 0.12

Interval = tuple[str, bool, float, float]


def _run(gate: Gate, plan: list[tuple[str, bool, float]]) -> list[Interval]:
    """Each (name, alone, arrives after s) in a thread of its own; its interval inside."""
    intervals: list[Interval] = []
    lock = threading.Lock()
    t0 = time.monotonic()

    def job(name: str, alone: bool, delay: float) -> None:
        time.sleep(delay)
        with gate.hold(alone):
            start = time.monotonic() - t0
            time.sleep(HOLD_S)
            end = time.monotonic() - t0
        with lock:
            intervals.append((name, alone, start, end))

    threads = [threading.Thread(target=job, args=p) for p in plan]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(intervals) == len(plan), "a job never got through the gate"
    assert gate.running == 0
    return intervals


def _overlap(a: Interval, b: Interval) -> bool:
    return a[2] < b[3] and b[2] < a[3]


def _peak(intervals: list[Interval]) -> int:
    events = sorted([(s, 1) for _, _, s, _ in intervals] + [(e, -1) for _, _, _, e in intervals])
    peak = now = 0
    for _, step in events:  # an end sorts before a start at the same instant (-1 < 1)
        now += step
        peak = max(peak, now)
    return peak


def test_a_notebook_that_needs_the_database_to_itself_never_runs_beside_another() -> None:
    # Plant: ``hold`` treating ``alone=True`` like a shared hold (or an alone hold not
    # waiting for ``running == 0``) lets "restart" overlap its neighbours.
    plan = [
        ("a", False, 0.0),
        ("b", False, 0.0),
        ("restart", True, 0.02),
        ("c", False, 0.03),
        ("d", False, 0.03),
        ("failover", True, 0.04),
        ("e", False, 0.05),
        ("f", False, 0.05),
    ]
    intervals = _run(Gate(2), plan)
    for alone in (i for i in intervals if i[1]):
        beside = [o[0] for o in intervals if o is not alone and _overlap(alone, o)]
        assert not beside, f"{alone[0]} ran beside {beside}: {intervals}"
    shared = [i for i in intervals if not i[1]]
    assert _peak(shared) == 2, "shared notebooks did run side by side"


@pytest.mark.parametrize("width", [1, 3])
def test_jobs_bounds_how_many_notebooks_run_at_once(width: int) -> None:
    # Plant: a gate whose predicate forgets ``running < width`` runs all nine at once.
    intervals = _run(Gate(width), [(f"n{i}", False, 0.0) for i in range(9)])
    assert _peak(intervals) == width


def test_an_alone_notebook_is_not_starved_by_shared_ones_arriving_after_it() -> None:
    # Plant: shared holds not waiting while an alone one waits (``_waiting_alone == 0``
    # dropped from their predicate): "late" ones keep the gate busy and "alone" goes last.
    plan = [("early1", False, 0.0), ("early2", False, 0.0), ("alone", True, 0.03)]
    plan += [(f"late{i}", False, 0.06) for i in range(4)]
    intervals = {name: (start, end) for name, _, start, end in _run(Gate(2), plan)}
    late_starts = [intervals[f"late{i}"][0] for i in range(4)]
    assert intervals["alone"][0] < min(late_starts), intervals
    assert intervals["alone"][0] >= max(intervals["early1"][1], intervals["early2"][1]) - 1e-3


def test_a_hold_ended_by_an_error_frees_its_place() -> None:
    # Plant: the ``finally`` of ``hold`` dropped: the next hold waits for ever.
    gate = Gate(1)
    with pytest.raises(RuntimeError), gate.hold(alone=True):
        raise RuntimeError("the notebook crashed")
    assert gate.running == 0
    done = threading.Event()

    def next_one() -> None:
        with gate.hold(alone=False):
            done.set()

    threading.Thread(target=next_one, daemon=True).start()
    assert done.wait(5)


def test_the_catalog_shares_and_what_needs_more_than_the_tables_runs_alone() -> None:
    # Plant: an ``alone_reason`` that reads only HEAVY (or ignores ``needs``) lets
    # database_restart share; one that treats every scenario as alone serialises all.
    jobs = {
        j.notebook.scenario: j for j in plan_jobs(discover(), None, ("service",), "row_lock", 1)
    }
    for shared in ("flash_sale", "zero_stock_stampede", "double_dip", "mixed_load"):
        assert alone_reason(jobs[shared]) is None, shared
    for alone, says in (
        ("database_restart", "it needs"),
        ("failover", "it needs"),
        ("scale", "500 workers"),
    ):
        reason = alone_reason(jobs[alone])
        assert reason is not None, alone
        assert says in reason, (alone, reason)
    unregistered = [j for name, j in jobs.items() if name == "sweep"]
    assert unregistered
    assert "not a registered scenario" in str(alone_reason(unregistered[0]))


def test_default_jobs_is_one_per_two_usable_cores() -> None:
    import os

    assert default_jobs() == max(1, len(os.sched_getaffinity(0)) // 2)
