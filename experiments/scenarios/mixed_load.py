"""mixed_load: creates, claims and gets over a few coupons, seeded; every invariant holds."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, Shared, at_least, gets_consistent
from experiments.history import History
from experiments.pipeline import Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.plans import Plan, mixed_plan
from experiments.result import Result, Verdict
from experiments.scenarios._shapes import WORKERS
from experiments.spec import Range, RunSpec, SpecError

NAME = "mixed_load"
TITLE = "Mixed load"
DESCRIPTION = (
    "3 coupons of 100; 50 seeded operations (20% create, 50% claim, 30% get) on 10 "
    "workers released together. Creates collide on names (409s occur). Expected: "
    "statuses within each op's allowed set, no 5xx, no timeouts, all invariants."
)
DEFAULTS: dict[str, Any] = {
    "coupons": 3,
    "amount": 100,
    "ops": 50,
    "create_ratio": 0.2,
    "claim_ratio": 0.5,
    "workers": 10,
}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "catalog"
CHECKS: tuple[str, ...] = (
    "gets_consistent",
    "creates_collided",
)


RANGES: dict[str, Range] = {
    "coupons": Range(1, 1000),
    "amount": Range(1, 2147483647, "a coupon's amount"),
    "ops": Range(1, 100_000),
    "create_ratio": Range(0, 1, "a share of the ops"),
    "claim_ratio": Range(0, 1, "a share of the ops"),
    "workers": WORKERS,
}


def run(spec: RunSpec) -> Result:
    coupons, amount, ops = int(spec["coupons"]), int(spec["amount"]), int(spec["ops"])
    create_ratio, claim_ratio = float(spec["create_ratio"]), float(spec["claim_ratio"])
    workers = int(spec["workers"])
    if create_ratio + claim_ratio > 1:
        raise SpecError(
            f"create_ratio + claim_ratio = {create_ratio + claim_ratio:g}: at most 1 (the rest are gets)"
        )

    def make_plan(s: int, prefix: str) -> Plan:
        return mixed_plan(
            s,
            prefix,
            coupons=coupons,
            amount=amount,
            ops=ops,
            create_ratio=create_ratio,
            claim_ratio=claim_ratio,
            workers=workers,
        )

    def expect(history: History, state: FinalState, run: Run) -> list[Verdict]:
        verdicts = [gets_consistent(history)]
        if run.plan.kinds().get("create"):
            # The plan aims its first create at an existing coupon: a 409 must come back.
            verdicts.append(
                at_least(history, "create", "coupon_exists", 1, name="creates_collided")
            )
        else:
            verdicts.append(Verdict.skip("creates_collided", "the plan has no create"))
        return verdicts

    return run_pipeline(spec, Workload(make_plan=make_plan, expect=expect))
