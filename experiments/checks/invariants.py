"""The invariants every run's tables keep: conservation, one claim per user, no orphan, no
negative stock."""

from __future__ import annotations

from experiments.checks._compose import _verdict, check
from experiments.checks.state import FinalState
from experiments.result import Verdict

__all__ = ["conservation", "no_negative_stock", "no_orphan_claims", "one_claim_per_user"]


@check("conservation")
def conservation(state: FinalState) -> Verdict:
    """For every coupon: amount = remaining_amount + its claim rows."""
    bad = []
    for name, (amount, remaining) in state.coupons.items():
        rows = state.claim_rows(name)
        if amount != remaining + rows:
            bad.append(f"{name}: amount {amount} != remaining {remaining} + claims {rows}")
    return _verdict(
        "conservation",
        bad,
        f"amount = remaining + claims for all {len(state.coupons)} coupons",
        {"coupons": len(state.coupons), "violations": len(bad)},
    )


@check("one_claim_per_user")
def one_claim_per_user(state: FinalState) -> Verdict:
    seen: dict[tuple[str, str], int] = {}
    for _, user, coupon in state.claims:
        seen[(user, coupon)] = seen.get((user, coupon), 0) + 1
    bad = [f"user {u} holds {n} claims on {c}" for (u, c), n in seen.items() if n > 1]
    return _verdict(
        "one_claim_per_user",
        bad,
        f"{len(seen)} (user, coupon) pairs, one claim each",
        {"pairs": len(seen), "duplicates": len(bad)},
    )


@check("no_orphan_claims")
def no_orphan_claims(state: FinalState) -> Verdict:
    bad = [
        f"claim {i} by {u} on missing coupon {c}"
        for i, u, c in state.claims
        if c not in state.coupons
    ]
    return _verdict(
        "no_orphan_claims",
        bad,
        f"all {len(state.claims)} claims have a coupon",
        {"orphans": len(bad)},
    )


@check("no_negative_stock")
def no_negative_stock(state: FinalState) -> Verdict:
    bad = [f"{n}: remaining {r}" for n, (_, r) in state.coupons.items() if r < 0]
    bad += [f"{n}: remaining {r} > amount {a}" for n, (a, r) in state.coupons.items() if r > a]
    return _verdict(
        "no_negative_stock", bad, "0 <= remaining <= amount everywhere", {"violations": len(bad)}
    )
