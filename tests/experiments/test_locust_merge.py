"""Merging workers' histories: placement on the master's clock, process clocks, lost workers."""

from __future__ import annotations

from experiments.history import History, Op
from experiments.linearizability import check_linearizable
from experiments.locust import WorkerReport, merge, peak_overlap
from experiments.locust._merge import LOST, UNREPORTED, phase_of, process_clocks, start_spread_ms
from experiments.plans import stampede_plan
from tests.histories import MS, history, setup_create


def _setup(coupon: str) -> History:
    # The lab creates the coupon (on the master's clock) before the workers start.
    return history(setup_create(coupon))


def _sync(offset: int, rtt: int = 2 * MS) -> list[tuple[int, int, int]]:
    return [(100 * MS, 100 * MS + rtt // 2 + offset, 100 * MS + rtt)]


def _reports(step_ns: int) -> tuple[list[WorkerReport], History]:
    """Two workers, four users: the true run is linearizable (one ok, three out of stock).

    Worker 1's clock reads true time before the run and true time + ``step_ns`` after
    the start (a clock step): its ops are recorded on the stepped clock.
    """
    plan = stampede_plan(1, "m", stock=1, users=4)
    coupon = plan.setup[0][0]
    true = {  # op id -> (invoke, complete, result), true times on the master's clock
        0: (200 * MS, 210 * MS, "ok"),
        1: (201 * MS, 220 * MS, "no_stock"),
        2: (211 * MS, 230 * MS, "no_stock"),
        3: (215 * MS, 240 * MS, "no_stock"),
    }
    reports = []
    for index, (plan_workers, skew) in enumerate((([0, 1], 0), ([2, 3], step_ns))):
        ops = []
        for w in plan_workers:
            planned = plan.ops[w]
            invoke, complete, result = true[planned.op_id]
            op = planned.to_op()
            op.invoke_ns, op.complete_ns, op.result = invoke + skew, complete + skew, result  # type: ignore[assignment]
            ops.append(op)
        reports.append(
            WorkerReport(
                index=index,
                node_id=f"n{index}",
                users=2,
                plan_workers=plan_workers,
                ops=ops,
                sync_before=_sync(0),
                sync_after=_sync(skew),
                done=True,
            )
        )
    return reports, _setup(coupon)


def test_widening_keeps_a_clock_step_from_raising_a_false_alarm() -> None:
    step = -3_600_000 * MS  # an hour back, stepped after the clock was measured
    reports, setup = _reports(step)
    plan = stampede_plan(1, "m", stock=1, users=4)
    placed = {
        p: merge(
            reports,
            plan,
            window=(200 * MS, 300 * MS),
            history=History(list(setup.ops), 0),
            placement=p,
        )
        for p in ("widened", "corrected", "raw")
    }
    assert check_linearizable(placed["widened"]).passed is True
    # Unwidened, worker 1's out-of-stock answers land before the coupon was created.
    assert check_linearizable(placed["corrected"]).passed is False
    assert check_linearizable(placed["raw"]).passed is False
    widened = {o.op_id: o for o in placed["widened"].ops}
    assert widened[2].complete_ns - widened[2].invoke_ns >= -step  # widened by >= the step
    # The Locust path's verdict: an hour's step is far past the bound, so unknown (a
    # widening of +-30 min excuses anything), never a pass.
    clocks = process_clocks(reports)
    verdict = check_linearizable(placed["corrected"], clocks=clocks)
    assert verdict.passed is None, verdict.detail
    assert verdict.figures["clocks_past_bound"] == ["locust-1"]
    assert check_linearizable(
        placed["corrected"], clocks=clocks, max_clock_uncertainty_ms=-step / MS
    ).passed


def test_without_skew_every_placement_passes() -> None:
    reports, setup = _reports(0)
    plan = stampede_plan(1, "m", stock=1, users=4)
    for p in ("widened", "corrected", "raw"):
        merged = merge(
            reports, plan, window=(0, 1), history=History(list(setup.ops), 0), placement=p
        )  # type: ignore[arg-type]
        assert check_linearizable(merged).passed is True, p
        assert len(merged.ops) == 5


def test_ops_of_a_lost_worker_become_unknown_over_the_run() -> None:
    reports, _ = _reports(0)
    reports[1].ops = reports[1].ops[:1]  # sent one op, then died
    reports[1].lost, reports[1].done = True, False
    plan = stampede_plan(1, "m", stock=1, users=4)
    merged = merge(reports, plan, window=(200 * MS, 900 * MS))
    by_id = {o.op_id: o for o in merged.ops}
    assert sorted(by_id) == [0, 1, 2, 3]
    lost = [o for o in merged.ops if o.message == LOST]
    assert [o.op_id for o in lost] == [3]
    assert lost[0].result == "unknown"
    # On the master's clock: the window itself (the check widens by the process clock).
    assert (lost[0].invoke_ns, lost[0].complete_ns) == (200 * MS, 900 * MS)
    widened = merge(reports, plan, window=(200 * MS, 900 * MS), placement="widened")
    lost = [o for o in widened.ops if o.message == LOST]
    clock = reports[1].clock()
    assert clock is not None
    assert lost[0].invoke_ns == 200 * MS - clock.uncertainty_ns
    assert lost[0].complete_ns == 900 * MS + clock.uncertainty_ns


def test_an_op_reported_twice_is_merged_once_and_unreported_ones_are_named() -> None:
    reports, _ = _reports(0)
    reports[0].ops = reports[0].ops * 2
    reports[1].ops = []
    reports[1].done = False
    plan = stampede_plan(1, "m", stock=1, users=4)
    merged = merge(reports, plan, window=(0, 1))
    assert sorted(o.op_id for o in merged.ops) == [0, 1, 2, 3]
    assert sum(o.message == UNREPORTED for o in merged.ops) == 2


def test_unassigned_plan_workers_are_left_out() -> None:
    reports, _ = _reports(0)
    reports[1].ops = []
    plan = stampede_plan(1, "m", stock=1, users=4)
    merged = merge(reports, plan, window=(0, 1), unassigned=[2, 3])
    assert sorted(o.op_id for o in merged.ops) == [0, 1]


def test_overlap_and_start_spread() -> None:
    ops = [
        Op(0, 0, "claim", "c", invoke_ns=0, complete_ns=10),
        Op(1, 1, "claim", "c", invoke_ns=5, complete_ns=15),
        Op(2, 2, "claim", "c", invoke_ns=10, complete_ns=20),  # starts as op 0 ends
        Op(3, 0, "claim", "c", invoke_ns=30, complete_ns=40),
    ]
    assert peak_overlap(ops) == 2
    assert start_spread_ms(ops) == 10 / 1e6
    assert start_spread_ms([]) is None


def test_process_clocks_name_each_worker_by_its_phase() -> None:
    reports, _ = _reports(0)
    reports[1].sync_before = []
    assert process_clocks(reports) == {phase_of(0): 1 * MS, phase_of(1): None}
    assert phase_of(3) == "locust-3"
