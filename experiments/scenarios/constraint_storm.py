"""constraint_storm: one user claims one coupon 50 times at once; the constraint holds."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, expected_counts, remaining_equals, rows_equal
from experiments.history import History
from experiments.lab import experiment
from experiments.plans import Plan, one_user_plan
from experiments.result import Result, Verdict

NAME = "constraint_storm"
TITLE = "Constraint storm"
DESCRIPTION = (
    "One coupon with stock 100; one user sends 50 claims at once. Expected: 1 success, "
    "49 already claimed (409), no driver text; 1 claim row; remaining 99."
)
DEFAULTS: dict[str, Any] = {"stock": 100, "requests": 50}


def run(
    *,
    seed: int | None = None,
    layer: str = "service",
    strategy: str = "row_lock",
    database_url: str | None = None,
    op_timeout_s: float = 10.0,
    run_timeout_s: float = 60.0,
    stock: int = 100,
    requests: int = 50,
) -> Result:
    def expect(history: History, state: FinalState, plan: Plan) -> list[Verdict]:
        coupon = plan.setup[0][0]
        return [
            expected_counts(history, "claim", {"ok": 1, "already_claimed": requests - 1}),
            remaining_equals(state, coupon, stock - 1),
            rows_equal(state, coupon, 1),
        ]

    return experiment(
        NAME,
        make_plan=lambda s, prefix: one_user_plan(s, prefix, stock=stock, requests=requests),
        expect=expect,
        params={"stock": stock, "requests": requests},
        seed=seed,
        layer=layer,
        strategy=strategy,
        database_url=database_url,
        op_timeout_s=op_timeout_s,
        run_timeout_s=run_timeout_s,
    )
