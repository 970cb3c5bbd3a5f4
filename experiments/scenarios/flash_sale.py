"""flash_sale: stock 5, 50 users claim at once; exactly five win."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, expected_counts, remaining_equals, rows_equal
from experiments.history import History
from experiments.lab import experiment
from experiments.plans import Plan, stampede_plan
from experiments.result import Result, Verdict

NAME = "flash_sale"
TITLE = "Flash sale"
DESCRIPTION = (
    "One coupon with stock 5; 50 users claim it, released together by a barrier. "
    "Expected: 5 successes, 45 out of stock, nothing else; remaining 0; 5 claim rows."
)
DEFAULTS: dict[str, Any] = {"stock": 5, "users": 50}


def run(
    *,
    seed: int | None = None,
    layer: str = "service",
    strategy: str = "row_lock",
    database_url: str | None = None,
    op_timeout_s: float = 10.0,
    run_timeout_s: float = 60.0,
    stock: int = 5,
    users: int = 50,
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
