"""interleaved_create_claim: creates and claims of one new name, all at once; order holds."""

from __future__ import annotations

from typing import Any

from experiments.checks import (
    FinalState,
    expected_counts,
    no_not_found_after_create,
    no_success_before_create,
    remaining_equals,
    results_within,
)
from experiments.history import History
from experiments.lab import experiment
from experiments.plans import Plan, interleaved_plan
from experiments.result import Result, Verdict

NAME = "interleaved_create_claim"
TITLE = "Interleaved create and claim"
DESCRIPTION = (
    "One new name; 30 operations alternate create (amount 50) and claim, all released "
    "together. Expected: exactly 1 create wins, the rest 409; claims succeed or 404; no "
    "claim succeeds before the winning create began, no 404 after it ended; "
    "remaining = 50 - successes."
)
DEFAULTS: dict[str, Any] = {"ops": 30, "amount": 50}


def run(
    *,
    seed: int | None = None,
    layer: str = "service",
    strategy: str = "row_lock",
    database_url: str | None = None,
    op_timeout_s: float = 10.0,
    run_timeout_s: float = 60.0,
    target: str | None = None,
    cleanup: bool = False,
    ops: int = 30,
    amount: int = 50,
) -> Result:
    def expect(history: History, state: FinalState, plan: Plan) -> list[Verdict]:
        coupon = plan.ops[0].coupon
        creates = plan.kinds().get("create", 0)
        ok_claims = sum(1 for o in history.of_kind("claim") if o.result == "ok")
        return [
            expected_counts(history, "create", {"ok": 1, "coupon_exists": creates - 1}),
            results_within(history, "claim", ("ok", "not_found")),
            remaining_equals(state, coupon, amount - ok_claims),
            no_success_before_create(history, coupon),
            no_not_found_after_create(history, coupon),
        ]

    return experiment(
        NAME,
        make_plan=lambda s, prefix: interleaved_plan(s, prefix, ops=ops, amount=amount),
        expect=expect,
        params={"ops": ops, "amount": amount},
        seed=seed,
        layer=layer,
        strategy=strategy,
        database_url=database_url,
        op_timeout_s=op_timeout_s,
        run_timeout_s=run_timeout_s,
        target=target,
        cleanup=cleanup,
    )
