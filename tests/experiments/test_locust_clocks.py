"""Clock offsets by round trips: the bound holds whatever the delays on the way; the
Locust path's linearizability verdict widens by them between processes only, within a
bound."""

from __future__ import annotations

import random

import pytest

from experiments.history import History, ResultKind
from experiments.linearizability import (
    LINEARIZABLE_TIME_LIMIT_S,
    MAX_CLOCK_UNCERTAINTY_MS,
    check_linearizable,
    started_ops,
)
from experiments.locust import ClockEstimate, WorkerReport, combine, estimate, merge
from experiments.locust._clocks import Sample
from experiments.locust._merge import process_clocks
from experiments.plans import Plan, PlannedOp
from experiments.result import Verdict
from tests.histories import MS, history, setup_create


def _round_trip(offset: int, there: int, back: int, at: int = 1_000_000) -> tuple[int, int, int]:
    """Master sends at ``at``; the worker reads its clock ``there`` ns later; back ``back`` ns later."""
    return (at, at + there + offset, at + there + back)


def test_the_true_offset_lies_within_the_uncertainty_for_any_delays() -> None:
    rng = random.Random(7)
    for _ in range(500):
        offset = rng.randint(-(10**12), 10**12)
        samples = [
            _round_trip(
                offset, rng.randint(0, 10**7), rng.randint(0, 10**7), at=rng.randint(0, 10**9)
            )
            for _ in range(rng.randint(1, 8))
        ]
        est = estimate(samples)
        assert abs(est.offset_ns - offset) <= est.uncertainty_ns


def test_the_shortest_round_trip_gives_the_estimate() -> None:
    slow = _round_trip(5_000, there=9_000, back=1_000)  # asymmetric and slow
    fast = _round_trip(5_000, there=100, back=100)
    est = estimate([slow, fast, slow])
    assert est.rtt_ns == 200
    assert est.uncertainty_ns == 100
    assert est.offset_ns == 5_000
    assert est.samples == 3


def test_no_round_trip_is_an_error() -> None:
    with pytest.raises(ValueError, match="no clock round trip"):
        estimate([])


def test_a_step_between_before_and_after_is_covered() -> None:
    before = ClockEstimate(offset_ns=0, uncertainty_ns=100, rtt_ns=200, samples=8)
    after = ClockEstimate(offset_ns=-10_000, uncertainty_ns=50, rtt_ns=100, samples=8)
    both = combine(before, after)
    for true in (0, -10_000, -5_000, 100, -10_050):
        assert abs(both.offset_ns - true) <= both.uncertainty_ns
    assert both.uncertainty_ns >= 5_000
    assert combine(before, None) == before


# -- the Locust path's linearizability verdict (issue 25, point 2) ----------------------
#
# The pipeline checks a Locust run as merged ``corrected`` (on the master's clock, not
# widened) with each worker process's clock uncertainty (``process_clocks``): the
# check widens between processes only, keeps a process's own order, and is unknown
# past the bound. ``_old_way`` is the check the Locust path ran before: every op
# widened by its worker's uncertainty, one interval each, no bound.

_Timed = tuple[str, float, float, ResultKind]  # user, invoke ms, complete ms, result


def _sync(offset_ms: float, there_ms: float, back_ms: float, at_ms: float = 50) -> Sample:
    """One round trip: sent at ``at_ms`` (master), read ``there_ms`` later by a worker
    whose clock is ``offset_ms`` ahead, back ``back_ms`` after that."""
    at = int(at_ms * MS)
    return (at, at + int((there_ms + offset_ms) * MS), at + int((there_ms + back_ms) * MS))


def _run(
    workers: list[tuple[list[_Timed], float, list[Sample], list[Sample]]], stock: int = 1
) -> tuple[list[WorkerReport], Plan, History]:
    """Locust worker processes, one plan worker (one thread: its ops in sequence) each.

    Each entry: the ops at their true times (master's clock), the worker clock's true
    offset (its ops are recorded on it), its clock round trips before and after.
    """
    coupon = "m-hot"
    planned: list[PlannedOp] = []
    reports = []
    for index, (timed, offset_ms, before, after) in enumerate(workers):
        ops = []
        for user, start, end, result in timed:
            p = PlannedOp(len(planned), index, "claim", coupon, user=user)
            planned.append(p)
            op = p.to_op()
            op.invoke_ns = int((start + offset_ms) * MS)
            op.complete_ns = int((end + offset_ms) * MS)
            op.result = result
            ops.append(op)
        reports.append(WorkerReport(index, f"n{index}", 1, [index], ops, before, after, done=True))
    plan = Plan(0, "m", len(workers), tuple(planned), setup=((coupon, stock),))
    return reports, plan, history(setup_create(coupon, stock))


def _copy(setup: History) -> History:
    return History(ops=list(setup.ops), origin_ns=setup.origin_ns)  # merge appends to it


def _locust_verdict(reports: list[WorkerReport], plan: Plan, setup: History) -> Verdict:
    """What the pipeline judges a Locust run by (``run_locust``'s drive, then ``_check``)."""
    merged = merge(reports, plan, window=(50 * MS, 5_000 * MS), history=_copy(setup))
    return check_linearizable(
        started_ops(merged), LINEARIZABLE_TIME_LIMIT_S, clocks=process_clocks(reports)
    )


def _old_way(reports: list[WorkerReport], plan: Plan, setup: History) -> Verdict:
    widened = merge(
        reports, plan, window=(50 * MS, 5_000 * MS), history=_copy(setup), placement="widened"
    )
    return check_linearizable(widened, LINEARIZABLE_TIME_LIMIT_S)


def test_one_worker_process_keeps_its_own_order() -> None:
    # The input: one worker, one thread, sequential ops: u1 refused no_stock at
    # 100 ms, then u2 ok at 110 ms on stock 1, with a 20 ms round trip (+-10 ms).
    reports, plan, setup = _run(
        [
            (
                [("u1", 100, 105, "no_stock"), ("u2", 110, 115, "ok")],
                3.0,
                [_sync(3.0, 10, 10)],
                [_sync(3.0, 10, 10, at_ms=200)],
            )
        ]
    )
    assert process_clocks(reports) == {"locust-0": 10 * MS}
    assert _old_way(reports, plan, setup).passed is True  # widened, the order was erased
    verdict = _locust_verdict(reports, plan, setup)
    assert verdict.passed is False, verdict.detail
    assert verdict.figures["clock_widening_ms"] == {"locust-0": 10.0}
    assert "locust-0 +-10.000 ms" in verdict.detail
    assert "own order kept" in verdict.detail


# Worker 1 refused u2 at 100 ms; worker 0 gave u1 the one coupon at 900 ms: 800 ms
# apart, no stock was ever taken before the refusal. Worker 0's clock is honest.
_HONEST = ([("u1", 900, 905, "ok")], 0.0, [_sync(0, 0.5, 0.5)], [_sync(0, 0.5, 0.5, 2_000)])


def test_a_four_second_round_trip_is_unknown_with_its_figure() -> None:
    reports, plan, setup = _run(
        [_HONEST, ([("u2", 100, 105, "no_stock")], 0.0, [_sync(0, 2_000, 2_000)], [])]
    )
    assert _old_way(reports, plan, setup).passed is True  # +-2 s excused 800 ms
    verdict = _locust_verdict(reports, plan, setup)
    assert verdict.passed is None, verdict.detail
    assert verdict.label == "unknown"
    assert verdict.figures["clocks_past_bound"] == ["locust-1"]
    assert verdict.figures["clock_widening_ms"] == {"locust-0": 0.5, "locust-1": 2000.0}
    assert verdict.figures["max_clock_uncertainty_ms"] == MAX_CLOCK_UNCERTAINTY_MS
    assert "locust-1 +-2000.000 ms" in verdict.detail
    assert f"bound of +-{MAX_CLOCK_UNCERTAINTY_MS:g} ms" in verdict.detail


def test_a_two_second_clock_step_is_unknown_with_its_figure() -> None:
    # Worker 1's clock steps 2 s ahead after it was first measured: its ops are
    # recorded on the stepped clock, the round trip after the run sees the step.
    reports, plan, setup = _run(
        [
            _HONEST,
            (
                [("u2", 100, 105, "no_stock")],
                2_000.0,
                [_sync(0, 0.5, 0.5)],
                [_sync(2_000, 0.5, 0.5, at_ms=2_000)],
            ),
        ]
    )
    clock = reports[1].clock()
    assert clock is not None
    assert clock.uncertainty_ns >= 1_000 * MS  # half the step, on either side
    assert _old_way(reports, plan, setup).passed is True  # +-1 s excused 800 ms
    verdict = _locust_verdict(reports, plan, setup)
    assert verdict.passed is None, verdict.detail
    assert verdict.figures["clocks_past_bound"] == ["locust-1"]
    assert "locust-1 +-1000.500 ms" in verdict.detail


def test_a_configured_bound_decides_and_a_clock_never_measured_is_unknown() -> None:
    reports, plan, setup = _run(
        [_HONEST, ([("u2", 100, 105, "no_stock")], 0.0, [_sync(0, 2_000, 2_000)], [])]
    )
    merged = merge(reports, plan, window=(50 * MS, 5_000 * MS), history=_copy(setup))
    # A bound wide enough: widened by +-2 s, the check passes, and says by how much.
    wide = check_linearizable(
        merged, clocks=process_clocks(reports), max_clock_uncertainty_ms=2_000.0
    )
    assert wide.passed is True, wide.detail
    assert "locust-1 +-2000.000 ms" in wide.detail
    reports[1].sync_before = []
    verdict = _locust_verdict(reports, plan, setup)
    assert process_clocks(reports)["locust-1"] is None
    assert verdict.passed is None
    assert "locust-1 not measured" in verdict.detail


def test_two_honest_clocks_and_a_real_overlap_still_pass() -> None:
    # True times: u1 ok on worker 0 at 100.00-100.10 ms, u2 refused on worker 1 at
    # 100.15-100.20 ms (linearizable: the stock went first), u3 refused on worker 1 at
    # 100.05-100.30 ms, overlapping u1. Worker 1's clock runs 0.2 ms behind and its
    # round trip was lopsided (0.5 ms there, nothing back): its offset is estimated
    # 0.25 ms off, within its +-0.25 ms.
    reports, plan, setup = _run(
        [
            (
                [("u1", 100.0, 100.1, "ok")],
                0.3,
                [_sync(0.3, 0.3, 0.3)],
                [_sync(0.3, 0.3, 0.3, at_ms=300)],
            ),
            (
                [("u3", 100.05, 100.3, "no_stock"), ("u2", 100.15, 100.2, "no_stock")],
                -0.2,
                [_sync(-0.2, 0.5, 0.0)],
                [_sync(-0.2, 0.5, 0.0, at_ms=300)],
            ),
        ]
    )
    clock = reports[1].clock()
    assert clock is not None
    assert clock.offset_ns == int(0.05 * MS)
    assert clock.uncertainty_ns == int(0.25 * MS)
    # Unwidened, the estimate's error puts u2's refusal before u1 began: a false alarm.
    corrected = merge(reports, plan, window=(50 * MS, 5_000 * MS), history=_copy(setup))
    assert check_linearizable(corrected).passed is False
    verdict = _locust_verdict(reports, plan, setup)
    assert verdict.passed is True, verdict.detail
    assert verdict.figures["clock_widening_ms"] == {"locust-0": 0.3, "locust-1": 0.25}
    assert "locust-0 +-0.300 ms, locust-1 +-0.250 ms" in verdict.detail
