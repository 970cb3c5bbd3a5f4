"""Two scenario shapes the catalog uses twice each, with different figures.

``stampede``: many users claim one coupon at once (zero_stock_stampede, flash_sale);
exactly ``min(stock, users)`` win, the rest are out of stock.
``one_user``: one user claims one coupon many times at once (constraint_storm,
double_dip); exactly one claim lands, the rest are already claimed.
"""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, expected_counts, remaining_equals, rows_equal
from experiments.history import History
from experiments.lab import experiment
from experiments.plans import Plan, one_user_plan, stampede_plan
from experiments.result import Result, Verdict

__all__ = ["one_user", "stampede"]


def stampede(name: str, *, stock: int, users: int, **common: Any) -> Result:
    """``users`` distinct users claim a coupon of ``stock`` together."""

    def expect(history: History, state: FinalState, plan: Plan) -> list[Verdict]:
        coupon = plan.setup[0][0]
        wins = min(stock, users)
        return [
            expected_counts(history, "claim", {"ok": wins, "no_stock": users - wins}),
            remaining_equals(state, coupon, stock - wins),
            rows_equal(state, coupon, wins),
        ]

    return experiment(
        name,
        make_plan=lambda s, prefix: stampede_plan(s, prefix, stock=stock, users=users),
        expect=expect,
        params={"stock": stock, "users": users},
        **common,
    )


def one_user(name: str, *, stock: int, requests: int, **common: Any) -> Result:
    """One user sends ``requests`` claims of a coupon of ``stock`` together."""

    def expect(history: History, state: FinalState, plan: Plan) -> list[Verdict]:
        coupon = plan.setup[0][0]
        return [
            expected_counts(history, "claim", {"ok": 1, "already_claimed": requests - 1}),
            remaining_equals(state, coupon, stock - 1),
            rows_equal(state, coupon, 1),
        ]

    return experiment(
        name,
        make_plan=lambda s, prefix: one_user_plan(s, prefix, stock=stock, requests=requests),
        expect=expect,
        params={"stock": stock, "requests": requests},
        **common,
    )
