"""process_crash and its nemesis: SIGKILLed server workers, supervised restarts, rolling restart."""

from __future__ import annotations

import pytest

from coupon_core.workers import serve_processes
from experiments import scenarios
from experiments.faults.processes import WorkerKiller
from experiments.scenarios import SCENARIOS
from experiments.scenarios.process_crash import crash_plan

pytestmark = pytest.mark.chaos


def test_crash_plan_is_seeded_and_starts_with_a_stampede() -> None:
    a = crash_plan(5, "p", workers=4, stock=3, ops_per_worker=50)
    assert a == crash_plan(5, "p", workers=4, stock=3, ops_per_worker=50)
    assert a != crash_plan(6, "p", workers=4, stock=3, ops_per_worker=50)
    first = [o for o in a.ops if o.op_id < 4]
    assert {(o.kind, o.coupon) for o in first} == {("claim", "p-hot")}
    assert {o.worker for o in first} == {0, 1, 2, 3}
    assert dict(a.setup)["p-hot"] == 3


def test_killer_refuses_an_unsupervised_group(db_url: str) -> None:
    with (
        serve_processes(db_url, processes=1, pool_size=1) as g,
        pytest.raises(ValueError, match="supervised"),
    ):
        WorkerKiller(g, db_url, "x").start()


def test_process_crash_with_two_kills(db_url: str) -> None:
    result = scenarios.run("process_crash", seed=11, kills=2, database_url=db_url)
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert {v.name for v in result.verdicts} == set(SCENARIOS["process_crash"].checks())
    s = result.summary
    assert s["worker_restarts"] == 2
    assert len(s["kills"]) == 2
    assert all(k["new_pid"] not in (None, k["pid"]) for k in s["kills"])
    # Each kill cut the killed worker's pool: it had backends, and they went.
    assert all(k["backends_before"] > 0 for k in s["kills"])
    assert all(g is not None for g in s["backends_gone_s"])
    assert s["rolling_ops"] > 0
    assert s["rolling_restart_s"] is not None
    # The unknown ops are the maybe-happened claims the linearizability check resolved.
    unknown = result.outcomes()["claim"].get("unknown", 0)
    assert unknown == sum(1 for o in result.history if o.kind == "claim" and o.result == "unknown")
    assert result.verdict("linearizable").passed


def test_process_crash_is_http_only(db_url: str) -> None:
    result = scenarios.run(
        "process_crash", seed=3, layer="service", kills=0, rolling=False, database_url=db_url
    )
    assert result.layer == "http"
    assert result.params["requested_layer"] == "service"
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert result.summary["worker_restarts"] == 0


def test_kills_cut_claims_needs_a_claim_in_flight_at_each_kill() -> None:
    """A hand-made history: the first kill cut a claim in flight (unknown), the second
    went out between two claims. The validity check fails (the run tested nothing at the
    second kill), and a claim that only ended unknown after the kill does not count."""
    from experiments.faults.processes import KillRecord
    from experiments.history import History, Op
    from experiments.scenarios.process_crash import kills_cut_claims

    history = History()
    history.extend(
        [
            Op(0, 0, "claim", "c", user="a", invoke_ns=100, complete_ns=300, result="unknown"),
            Op(1, 1, "claim", "c", user="b", invoke_ns=100, complete_ns=300, result="ok"),
            Op(2, 0, "claim", "c", user="c", invoke_ns=400, complete_ns=450, result="ok"),
            Op(3, 0, "claim", "c", user="d", invoke_ns=520, complete_ns=600, result="unknown"),
        ]
    )
    cut_one = [KillRecord(pid=1, kill_ns=200)]
    v = kills_cut_claims(history, cut_one, 1)
    assert v.passed is True
    assert v.validity is True
    assert v.figures["cut_per_kill"] == [1]
    both = [KillRecord(pid=1, kill_ns=200), KillRecord(pid=2, kill_ns=500)]
    v = kills_cut_claims(history, both, 2)
    assert v.passed is False
    assert v.figures["cut_per_kill"] == [1, 0]
    # Fewer kills than planned is no experiment either.
    assert kills_cut_claims(history, cut_one, 2).passed is False


def test_rolling_restart_fails_on_any_request_lost_in_its_window() -> None:
    """Hand-made: the group promises a rolling restart loses no request. A 503 or a cut
    connection (unknown) inside the rolling window fails the verdict (the old check
    passed both: it failed on a 500 only, and printed the goal as MISSED); one inside a
    kill window is the kill's; a rolling restart no op overlapped tested nothing."""
    from experiments.faults.window import Window
    from experiments.history import Op
    from experiments.scenarios.process_crash import rolling_restart_verdict

    kill = [Window("process", "kill", 100, 200)]
    roll = [Window("process", "rolling", 500, 900)]

    def op(i: int, start: int, end: int, result: str) -> Op:
        return Op(i, 0, "claim", "c", user=f"u{i}", invoke_ns=start, complete_ns=end, result=result)

    clean = [op(0, 510, 520, "ok"), op(1, 150, 160, "unknown"), op(2, 600, 610, "no_stock")]
    v = rolling_restart_verdict(clean, kill, roll, 0.4)
    assert v.passed, v.detail
    assert v.figures["ops"] == 2
    for lost in ("unavailable", "unknown", "server_error"):
        v = rolling_restart_verdict([*clean, op(3, 700, 720, lost)], kill, roll, 0.4)
        assert not v.passed, lost
        assert v.figures["failed_op_ids"] == [3]
    # An op both windows overlap failed for the kill: not the rolling restart's.
    both = [*clean, op(4, 190, 510, "unknown")]
    assert rolling_restart_verdict(both, kill, roll, 0.4).passed
    assert not rolling_restart_verdict([op(1, 150, 160, "unknown")], kill, roll, 0.4).passed
    assert not rolling_restart_verdict(clean, kill, roll, None).passed
