"""zero_stock_stampede: stock 1, 100 users claim at once; exactly one wins."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, expected_counts, remaining_equals, rows_equal
from experiments.history import History
from experiments.lab import experiment
from experiments.plans import Plan, stampede_plan
from experiments.result import Result, Verdict

NAME = "zero_stock_stampede"
TITLE = "Zero-stock stampede"
DESCRIPTION = (
    "One coupon with stock 1; 100 users claim it, released together by a barrier. "
    "Expected: 1 success, 99 out of stock, nothing else; remaining 0; 1 claim row."
)
DEFAULTS: dict[str, Any] = {"stock": 1, "users": 100}


def run(
    *,
    seed: int | None = None,
    layer: str = "service",
    strategy: str = "row_lock",
    database_url: str | None = None,
    op_timeout_s: float = 10.0,
    run_timeout_s: float = 60.0,
    stock: int = 1,
    users: int = 100,
) -> Result:
    def expect(history: History, state: FinalState, plan: Plan) -> list[Verdict]:
        coupon = plan.setup[0][0]
        wins = min(stock, users)
        return [
            expected_counts(history, "claim", {"ok": wins, "no_stock": users - wins}),
            remaining_equals(state, coupon, stock - wins),
            rows_equal(state, coupon, wins),
        ]

    return experiment(
        NAME,
        make_plan=lambda s, prefix: stampede_plan(s, prefix, stock=stock, users=users),
        expect=expect,
        params={"stock": stock, "users": users},
        seed=seed,
        layer=layer,
        strategy=strategy,
        database_url=database_url,
        op_timeout_s=op_timeout_s,
        run_timeout_s=run_timeout_s,
    )
