"""Two scenario shapes the catalog uses twice each, with different figures.

``stampede``: many users claim one coupon at once (zero_stock_stampede, flash_sale);
exactly ``min(stock, users)`` win, the rest are out of stock.
``one_user``: one user claims one coupon many times at once (constraint_storm,
double_dip); exactly one claim lands, the rest are already claimed.
Both are stampede-shaped plans: the pipeline adds ``stampede_collided`` to them.
"""

from __future__ import annotations

from experiments.checks import FinalState, expected_counts, remaining_equals, rows_equal
from experiments.history import History
from experiments.pipeline import Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.plans import one_user_plan, stampede_plan
from experiments.result import Result, Verdict
from experiments.spec import Range, RunSpec

__all__ = ["ONE_USER_RANGES", "SHAPE_CHECKS", "STAMPEDE_RANGES", "WORKERS", "one_user", "stampede"]

#: The checks of both shapes, beyond the catalog's shared set (the registry's names).
SHAPE_CHECKS: tuple[str, ...] = ("claim_counts", "final_stock", "claim_rows", "stampede_collided")

#: A worker is a thread of the lab's process, and an HTTP worker a connection of its own.
WORKERS = Range(1, 2000, "each is a thread of the lab's process")
STOCK = Range(1, 2147483647, "a coupon's amount")
STAMPEDE_RANGES: dict[str, Range] = {"stock": STOCK, "users": WORKERS}
ONE_USER_RANGES: dict[str, Range] = {"stock": STOCK, "requests": WORKERS}


def stampede(spec: RunSpec) -> Result:
    """``users`` distinct users claim a coupon of ``stock`` together."""
    stock, users = int(spec["stock"]), int(spec["users"])

    def expect(history: History, state: FinalState, run: Run) -> list[Verdict]:
        coupon = run.plan.setup[0][0]
        wins = min(stock, users)
        return [
            expected_counts(history, "claim", {"ok": wins, "no_stock": users - wins}),
            remaining_equals(state, coupon, stock - wins),
            rows_equal(state, coupon, wins),
        ]

    return run_pipeline(
        spec,
        Workload(
            make_plan=lambda s, prefix: stampede_plan(s, prefix, stock=stock, users=users),
            expect=expect,
        ),
    )


def one_user(spec: RunSpec) -> Result:
    """One user sends ``requests`` claims of a coupon of ``stock`` together."""
    stock, requests = int(spec["stock"]), int(spec["requests"])

    def expect(history: History, state: FinalState, run: Run) -> list[Verdict]:
        coupon = run.plan.setup[0][0]
        return [
            expected_counts(history, "claim", {"ok": 1, "already_claimed": requests - 1}),
            remaining_equals(state, coupon, stock - 1),
            rows_equal(state, coupon, 1),
        ]

    return run_pipeline(
        spec,
        Workload(
            make_plan=lambda s, prefix: one_user_plan(s, prefix, stock=stock, requests=requests),
            expect=expect,
        ),
    )
