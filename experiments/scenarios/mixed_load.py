"""mixed_load: creates, claims and gets over a few coupons, seeded; every invariant holds."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, at_least, gets_consistent
from experiments.history import History
from experiments.lab import experiment
from experiments.plans import Plan, mixed_plan
from experiments.result import Result, Verdict

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
    coupons: int = 3,
    amount: int = 100,
    ops: int = 50,
    create_ratio: float = 0.2,
    claim_ratio: float = 0.5,
    workers: int = 10,
) -> Result:
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

    def expect(history: History, state: FinalState, plan: Plan) -> list[Verdict]:
        verdicts = [gets_consistent(history)]
        if plan.kinds().get("create"):
            # The plan aims its first create at an existing coupon: a 409 must come back.
            verdicts.append(
                at_least(history, "create", "coupon_exists", 1, name="creates_collided")
            )
        return verdicts

    return experiment(
        NAME,
        make_plan=make_plan,
        expect=expect,
        params={
            "coupons": coupons,
            "amount": amount,
            "ops": ops,
            "create_ratio": create_ratio,
            "claim_ratio": claim_ratio,
            "get_ratio": round(1 - create_ratio - claim_ratio, 6),
            "workers": workers,
        },
        seed=seed,
        layer=layer,
        strategy=strategy,
        database_url=database_url,
        op_timeout_s=op_timeout_s,
        run_timeout_s=run_timeout_s,
        target=target,
        cleanup=cleanup,
    )
