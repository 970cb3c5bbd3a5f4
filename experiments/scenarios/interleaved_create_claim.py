"""interleaved_create_claim: creates and claims of one new name, all at once; order holds."""

from __future__ import annotations

from typing import Any

from experiments.checks import (
    FinalState,
    Shared,
    check,
    create_winner,
    expected_counts,
    no_not_found_after_create,
    no_success_before_create,
    results_within,
)
from experiments.history import History, Op
from experiments.pipeline import Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.plans import interleaved_plan
from experiments.result import Result, Verdict
from experiments.spec import Range, RunSpec

NAME = "interleaved_create_claim"
TITLE = "Interleaved create and claim"
DESCRIPTION = (
    "One new name; 30 operations alternate create (amount 50) and claim, all released "
    "together. Expected, from the plan: exactly 1 create wins, the rest 409; claims "
    "succeed or 404 (every claimer is a new user and the stock covers every claim); "
    "every claim invoked after the winning create completed succeeds; none succeeds "
    "before it began; the final stock lies between 50 minus the claims that could have "
    "landed and 50 minus those that must have."
)
DEFAULTS: dict[str, Any] = {"ops": 30, "amount": 50}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "catalog"
CHECKS: tuple[str, ...] = (
    "create_counts",
    "claim_results",
    "claims_after_create_succeed",
    "final_stock_within_plan",
    "no_success_before_create",
    "no_not_found_after_create",
)


RANGES: dict[str, Range] = {
    "ops": Range(2, 2000, "a thread each; at least one create and one claim"),
    "amount": Range(1, 2147483647, "a coupon's amount"),
}


def run(spec: RunSpec) -> Result:
    ops, amount = int(spec["ops"]), int(spec["amount"])

    def expect(history: History, state: FinalState, run: Run) -> list[Verdict]:
        plan = run.plan
        coupon = plan.ops[0].coupon
        creates = plan.kinds().get("create", 0)
        planned_claims = plan.kinds().get("claim", 0)
        # From the plan: distinct users, one claim each, so none is already_claimed;
        # and where the stock covers every planned claim, none is out of stock.
        allowed = (
            ("ok", "not_found") if amount >= planned_claims else ("ok", "not_found", "no_stock")
        )
        return [
            expected_counts(history, "create", {"ok": 1, "coupon_exists": creates - 1}),
            results_within(history, "claim", allowed),
            claims_after_create_succeed(history, coupon, covered=amount >= planned_claims),
            final_stock_within_plan(history, state, coupon, amount),
            no_success_before_create(history, coupon),
            no_not_found_after_create(history, coupon),
        ]

    return run_pipeline(
        spec,
        Workload(
            make_plan=lambda s, prefix: interleaved_plan(s, prefix, ops=ops, amount=amount),
            expect=expect,
        ),
    )


def _claim_window(history: History, coupon: str) -> tuple[list[Op], list[Op], list[Op]]:
    """The claims on ``coupon``; those that must have landed (invoked after the winning
    create completed), and those that could have (completed after it began)."""
    claims = [o for o in history if o.kind == "claim" and o.coupon == coupon]
    win = create_winner(history, coupon)
    if win is None:
        return claims, [], []
    must = [o for o in claims if o.invoke_ns > win.complete_ns]
    could = [o for o in claims if o.complete_ns > win.invoke_ns]
    return claims, must, could


@check("claims_after_create_succeed")
def claims_after_create_succeed(history: History, coupon: str, *, covered: bool) -> Verdict:
    """Every claim invoked after the winning create completed succeeded (the coupon
    existed, each claimer is a new user, and the plan's stock covers every claim)."""
    _, must, _ = _claim_window(history, coupon)
    if not covered:
        return Verdict(
            "claims_after_create_succeed",
            True,
            "the plan's stock does not cover every claim: no claim is bound to succeed",
            {"after_create": len(must)},
        )
    bad = [f"claim {o.op_id} ended {o.result}" for o in must if o.result != "ok"]
    return Verdict(
        "claims_after_create_succeed",
        not bad,
        f"{len(must) - len(bad)} of the {len(must)} claims invoked after the create completed"
        " succeeded" + (f": {'; '.join(bad[:5])}" if bad else ""),
        {"after_create": len(must), "failed": len(bad)},
    )


@check("final_stock_within_plan")
def final_stock_within_plan(
    history: History, state: FinalState, coupon: str, amount: int
) -> Verdict:
    """amount - (claims that could have landed) <= remaining <= amount - (claims that must have)."""
    _, must, could = _claim_window(history, coupon)
    low = max(0, amount - len(could))
    high = amount - min(len(must), amount)
    got = state.remaining(coupon)
    return Verdict(
        "final_stock_within_plan",
        got is not None and low <= got <= high,
        f"{coupon}: remaining {got}, expected {low}..{high} ({len(must)} claims must have"
        f" landed, {len(could)} could have)",
        {"remaining": got, "low": low, "high": high, "must": len(must), "could": len(could)},
    )
