"""Did the stampede collide? Peak in flight and overlap with the winner, from the history."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from experiments.checks import stampede_collided
from experiments.history import History, Op, collision, peak_in_flight, winner_overlap
from experiments.result import Result, Verdict
from tests.histories import op


def _claim(op_id: int, t: tuple[int, int], result: str = "no_stock") -> Op:
    # Monotonic times are never 0 (0 marks an op that never ran): shift them.
    t0, t1 = 1000 + t[0], 1000 + t[1]
    return op(op_id, "claim", t0, t1, result, f"u{op_id}", phase="load", unit=1)


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


def test_a_serial_run_is_no_experiment() -> None:
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


# -- a stampede that ran serially is drawn again (experiments.pipeline) ----------------


class _Serialize:
    """Make the workers run one after another, as a machine too busy to wake them together
    does: every claim holds one lock for its whole call. With ``first_attempt_only``,
    only the claims on the first coupon claimed, and the later attempts' claims are made
    to collide (each waits inside the service until all ``workers`` are in flight), so
    the test does not depend on how busy the machine is."""

    def __init__(
        self, monkeypatch: Any, *, first_attempt_only: bool = False, workers: int = 0
    ) -> None:
        from coupon_core import CouponService
        from experiments import clients

        self.lock = threading.Lock()
        self.first_attempt_only = first_attempt_only
        self.first: str | None = None
        self.gates: dict[str, threading.Barrier] = {}
        real_invoke = clients.ServiceClient.invoke
        real_claim = CouponService.claim

        def invoke(client: Any, op: Op, history: History | None = None) -> Op:
            if op.kind != "claim" or not self._serial(op.coupon):
                return real_invoke(client, op, history)
            with self.lock:
                return real_invoke(client, op, history)

        def claim(service: Any, user_id: str, coupon_name: str, *args: Any, **kw: Any) -> Any:
            if self.first_attempt_only and not self._serial(coupon_name):
                gate = self.gates.setdefault(coupon_name, threading.Barrier(workers, timeout=10))
                gate.wait()
            return real_claim(service, user_id, coupon_name, *args, **kw)

        monkeypatch.setattr(clients.ServiceClient, "invoke", invoke)
        monkeypatch.setattr(CouponService, "claim", claim)

    def _serial(self, coupon: str) -> bool:
        if not self.first_attempt_only:
            return True
        self.first = self.first or coupon
        return coupon == self.first


@pytest.mark.chaos
def test_a_serial_stampede_is_drawn_again_and_every_attempt_is_kept(
    db_url: str, monkeypatch: Any, capsys: Any
) -> None:
    from experiments import scenarios

    _Serialize(monkeypatch, first_attempt_only=True, workers=8)
    result = scenarios.run("flash_sale", database_url=db_url, users=8, stock=2, seed=4)
    out = capsys.readouterr().out
    assert "drawn again on fresh coupons (2 of at most 4)" in out
    assert [a.status for a in result.attempts] == ["no_experiment", "pass"]
    first = result.attempts[0]
    assert {v.name: v.label for v in first.verdicts}["stampede_collided"] == "FAIL"
    assert first.figures == {"check": "stampede_collided", "peak_in_flight": 1, "workers": 8}
    assert result.summary["attempts"] == [
        {"number": 1, "status": "no_experiment", **first.figures},
        {"number": 2, "status": "pass", **first.figures, "peak_in_flight": 8},
    ]
    assert result.verdict("stampede_collided").passed is True
    # The result is the collided attempt's alone: its coupon, its eight claims.
    assert result.outcomes()["claim"] == {"ok": 2, "no_stock": 6}
    assert result.status == "pass", [(v.name, v.detail) for v in result.failed]


@pytest.mark.chaos
def test_a_stampede_that_never_collides_is_no_experiment_and_never_green(
    db_url: str, monkeypatch: Any, capsys: Any
) -> None:
    from experiments import scenarios
    from experiments.pipeline import ATTEMPTS

    _Serialize(monkeypatch)
    result = scenarios.run("flash_sale", database_url=db_url, users=8, stock=2, seed=4)
    out = capsys.readouterr().out
    assert out.count("drawn again on fresh coupons") == ATTEMPTS - 1
    assert "no experiment after 4 attempt(s)" in out
    assert [a.status for a in result.attempts] == ["no_experiment"] * ATTEMPTS
    assert result.status == "no_experiment"
    assert not result.passed
    assert [v.name for v in result.failed] == ["stampede_collided"]
    assert result.verdict("stampede_collided").detail.startswith("not a stampede: peak 1 of 8")


def _stampede_with(verdict: Verdict, db_url: str) -> Result:
    """flash_sale's plan through the pipeline, with one more check of the system."""
    from experiments.pipeline import Workload, run
    from experiments.plans import stampede_plan
    from experiments.spec import RunSpec

    return run(
        RunSpec("planted", seed=4, database_url=db_url),
        Workload(
            make_plan=lambda s, prefix: stampede_plan(s, prefix, stock=2, users=8),
            expect=lambda history, state, r: [verdict],
        ),
    )


@pytest.mark.chaos
def test_a_serial_run_with_another_failure_stands_at_once(
    db_url: str, monkeypatch: Any, capsys: Any
) -> None:
    """A redraw never hides what the service did: any other failed check ends the run."""
    _Serialize(monkeypatch)
    result = _stampede_with(Verdict("planted", False, "a planted failure"), db_url)
    assert "drawn again" not in capsys.readouterr().out
    assert len(result.attempts) == 1
    assert result.status == "FAIL"
    assert {v.name for v in result.failed} == {"stampede_collided", "planted"}


@pytest.mark.chaos
def test_a_serial_run_with_an_unknown_verdict_stands_and_is_unknown(
    db_url: str, monkeypatch: Any, capsys: Any
) -> None:
    """The reviewer's case: ``linearizable`` unknown plus a serial stampede was drawn
    again and the result said passed (``checks.invalid_run`` looked at False only)."""
    _Serialize(monkeypatch)
    result = _stampede_with(Verdict("planted", None, "search past its time bound"), db_url)
    assert "drawn again" not in capsys.readouterr().out
    assert len(result.attempts) == 1
    assert result.attempts[0].status == "unknown"
    assert result.status == "unknown"
    assert not result.passed
