"""Did the stampede collide? Peak in flight and overlap with the winner, from the history."""

from __future__ import annotations

from experiments.checks import stampede_collided
from experiments.history import History, Op, collision, peak_in_flight, winner_overlap


def _claim(op_id: int, t: tuple[int, int], result: str = "no_stock") -> Op:
    return Op(
        op_id=op_id,
        worker=op_id,
        kind="claim",
        coupon="c",
        user=f"u{op_id}",
        # Monotonic times are never 0 (0 marks an op that never ran): shift them.
        invoke_ns=1000 + t[0],
        complete_ns=1000 + t[1],
        result=result,  # type: ignore[arg-type]
        phase="load",
    )


def test_a_real_stampede_has_everyone_in_flight_with_the_winner() -> None:
    ops = [_claim(0, (10, 50), "ok"), *(_claim(i, (10 + i, 60 + i)) for i in range(1, 10))]
    assert peak_in_flight(ops) == 10
    win, share = winner_overlap(ops)
    assert win is not None
    assert win.op_id == 0
    assert share == 1.0
    verdict = stampede_collided(History(ops=ops), 10)
    assert verdict.passed is True
    assert verdict.figures["peak_in_flight"] == 10


def test_a_serial_run_is_not_a_stampede() -> None:
    # Each op starts when the one before ends: touching intervals do not overlap.
    ops = [_claim(0, (0, 10), "ok"), *(_claim(i, (i * 10, i * 10 + 10)) for i in range(1, 10))]
    assert peak_in_flight(ops) == 1
    assert winner_overlap(ops)[1] == 0.0
    verdict = stampede_collided(History(ops=ops), 10)
    assert verdict.passed is False
    assert verdict.detail.startswith("not a stampede")


def test_half_the_workers_in_flight_is_the_line() -> None:
    ops = [_claim(i, (0, 100), "ok" if i == 0 else "no_stock") for i in range(5)]
    ops += [_claim(i, (200 + i * 10, 205 + i * 10)) for i in range(5, 10)]
    assert stampede_collided(History(ops=ops), 10).passed is True
    assert stampede_collided(History(ops=ops[1:]), 10).passed is False


def test_collision_without_a_winner_reports_no_overlap() -> None:
    figures = collision([_claim(1, (0, 5)), _claim(2, (1, 6))], 2)
    assert figures == {
        "peak_in_flight": 2,
        "peak_in_flight_share": 1.0,
        "overlap_with_winner": None,
        "winner_op_id": None,
    }


def test_reports_show_the_collision_beside_the_spread() -> None:
    from experiments.suite_html import _collision_text
    from experiments.suite_report import JobReport

    job = JobReport(
        "flash_sale",
        "http",
        "row_lock",
        1,
        summary={"start_spread_ms": 3.2, "peak_in_flight": 50, "overlap_with_winner": 0.98},
    )
    entry = job.to_dict()
    assert (entry["start_spread_ms"], entry["peak_in_flight"], entry["overlap_with_winner"]) == (
        3.2,
        50,
        0.98,
    )
    assert _collision_text(job.collision) == " · peak in flight 50, overlap with the winner 98%"
    scale = JobReport(
        "scale", "service", "row_lock", 1, summary={"peak_in_flight_by_size": {"100": 97}}
    )
    assert scale.collision == {"peak_in_flight": {"100": 97}}


def test_a_run_is_invalid_only_when_nothing_but_its_stampede_failed() -> None:
    from experiments.checks import invalid_run
    from experiments.result import Verdict

    serial = Verdict("stampede_collided", False, "not a stampede")
    assert invalid_run([serial, Verdict("conservation", True, "")])
    assert invalid_run([Verdict("stampede_collided_500", False, ""), Verdict("x", None, "")])
    # A check the system failed is a finding, collided or not.
    assert not invalid_run([serial, Verdict("conservation", False, "lost a claim")])
    assert not invalid_run([Verdict("stampede_collided", True, "collided")])
    assert not invalid_run([])
