"""Result: its status decided once, and a round trip through its files."""

from __future__ import annotations

from pathlib import Path

import pytest

from experiments.history import History, Op
from experiments.result import Attempt, Result, Verdict, status_of


def _v(name: str, passed: bool | None, *, validity: bool = False) -> Verdict:
    return Verdict(name, passed, "d", {"k": 1}, validity=validity)


@pytest.mark.parametrize(
    ("verdicts", "status"),
    [
        ([_v("a", True), _v("s", True, validity=True)], "pass"),
        ([_v("a", True), _v("s", False, validity=True)], "no_experiment"),
        # An unknown check of the system is never a pass, nor excused by a serial run.
        ([_v("a", None), _v("s", False, validity=True)], "unknown"),
        ([_v("a", False), _v("s", False, validity=True)], "FAIL"),
        ([_v("a", False), _v("b", None)], "FAIL"),
        ([Verdict.skip("a", "no database")], "skipped"),
        ([], "skipped"),
        ([Verdict.skip("a", "x"), _v("s", None, validity=True)], "no_experiment"),
        # A finding excuses the failure its evidence explains, never an unknown.
        ([Verdict("lin", False, "d", finding="loss"), _v("a", True)], "pass"),
        ([Verdict("lin", None, "d", finding="loss"), _v("a", True)], "unknown"),
        ([Verdict("lin", False, "d", finding="loss"), _v("a", False)], "FAIL"),
    ],
)
def test_status_is_decided_once(verdicts: list[Verdict], status: str) -> None:
    assert status_of(verdicts) == status


def test_a_result_round_trips_with_its_attempts(tmp_path: Path) -> None:
    history = History()
    op = Op(1, 0, "claim", "c\ud800", user="u")
    op.invoke_ns, op.complete_ns, op.result = history.origin_ns + 5, history.origin_ns + 9, "ok"
    history.ops.append(op)
    first = [
        _v("a", True),
        _v("stampede_collided", False, validity=True),
        Verdict("lin", False, "lost", finding="acknowledged claims lost"),
    ]
    last = [_v("a", True), _v("stampede_collided", True, validity=True)]
    result = Result(
        scenario="flash_sale",
        seed=7,
        layer="http",
        strategy="atomic",
        params={"seed": 7, "users": 3},
        history=history,
        verdicts=last,
        summary={"outcomes": {"claim": {"ok": 1}}},
        started_at="2026-12-07T00:00:00+00:00",
        duration_s=1.5,
        attempts=[Attempt(1, "p1", first, {"peak_in_flight": 1}), Attempt(2, "p2", last)],
    )
    loaded = Result.load(result.save(tmp_path))
    assert loaded.to_dict() == result.to_dict()
    assert loaded.status == "pass"
    assert [a.status for a in loaded.attempts] == ["no_experiment", "pass"]
    assert loaded.verdict("stampede_collided").validity
    assert loaded.history.ops[0].coupon == "c\ud800"
