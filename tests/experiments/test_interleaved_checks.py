"""interleaved_create_claim's expectations come from the plan and the create's interval."""

from __future__ import annotations

from experiments.checks import FinalState
from experiments.history import History, Op
from experiments.scenarios.interleaved_create_claim import (
    claims_after_create_succeed,
    final_stock_within_plan,
)
from tests.histories import history, op

C = "p-new"


def _op(op_id: int, kind: str, result: str, t: tuple[int, int]) -> Op:
    user = f"u{op_id}" if kind == "claim" else None
    amount = 10 if kind == "create" else None
    return op(op_id, kind, *t, result, user, coupon=C, amount=amount, unit=1)


def _history(*claims: Op) -> History:
    # The winning create runs over [100, 200].
    return history(_op(0, "create", "ok", (100, 200)), *claims)


def _state(remaining: int) -> FinalState:
    return FinalState(prefix="p", coupons={C: (10, remaining)})


def test_a_claim_after_the_create_that_did_not_succeed_fails() -> None:
    good = _history(_op(1, "claim", "ok", (250, 260)), _op(2, "claim", "not_found", (50, 150)))
    assert claims_after_create_succeed(good, C, covered=True).passed is True
    bad = _history(_op(1, "claim", "not_found", (250, 260)))
    verdict = claims_after_create_succeed(bad, C, covered=True)
    assert verdict.passed is False
    assert verdict.figures == {"after_create": 1, "failed": 1}


def test_final_stock_is_bounded_by_the_claims_that_must_and_could_land() -> None:
    # 1 claim must land (invoked after 200), 2 could (completed after 100), 1 could not.
    h = _history(
        _op(1, "claim", "ok", (250, 260)),
        _op(2, "claim", "ok", (150, 210)),
        _op(3, "claim", "not_found", (10, 90)),
    )
    assert final_stock_within_plan(h, _state(8), C, 10).passed is True
    assert final_stock_within_plan(h, _state(9), C, 10).passed is True
    # A lost claim (stock untouched) or an extra one (stock below the bound) fails,
    # whatever the history says succeeded.
    assert final_stock_within_plan(h, _state(10), C, 10).passed is False
    assert final_stock_within_plan(h, _state(7), C, 10).passed is False
