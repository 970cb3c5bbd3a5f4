"""The invariants every run's tables keep: conservation, one claim per user, no orphan, no
negative stock.

Expected figures come from the plan and the acknowledged operations, never from the
final tables alone: conservation takes each coupon's amount from the create the
history acknowledged (the plan's setup creates are in it, phase ``setup``), so a row
whose ``amount`` was rewritten is a violation, not a new baseline.
"""

from __future__ import annotations

from experiments.checks._compose import check, verdict_of
from experiments.checks.state import FinalState
from experiments.history import INDETERMINATE, History
from experiments.result import Verdict

__all__ = [
    "conservation",
    "created_amounts",
    "no_negative_stock",
    "no_orphan_claims",
    "one_claim_per_user",
]


def created_amounts(history: History, prefix: str = "") -> dict[str, frozenset[int]]:
    """The amounts each coupon (named ``prefix...``) can hold by the history's creates.

    A coupon's acknowledged create (``ok``) gives its amount; without one, any create
    whose outcome is unknown may have made it, with its amount. A create refused
    cleanly (exists, invalid) made nothing.
    """
    acked: dict[str, set[int]] = {}
    maybe: dict[str, set[int]] = {}
    for o in history:
        if o.kind != "create" or o.amount is None or not o.coupon.startswith(prefix):
            continue
        if o.result == "ok":
            acked.setdefault(o.coupon, set()).add(o.amount)
        elif o.result in INDETERMINATE:
            maybe.setdefault(o.coupon, set()).add(o.amount)
    return {c: frozenset(acked.get(c) or maybe[c]) for c in {*acked, *maybe}}


@check("conservation")
def conservation(state: FinalState, history: History | None = None) -> Verdict:
    """For every coupon: the amount it was created with = remaining_amount + its claim rows.

    With ``history`` (every run's pipeline gives it) the amount is the acknowledged
    create's: a row whose ``amount`` differs, a row no create in the history made,
    and an acknowledged create without its row are violations. Without (a state
    planted by SQL, say) the row's own ``amount`` is all there is to go by.
    """
    amounts = created_amounts(history, state.prefix) if history is not None else None
    bad = []
    for name, (amount, remaining) in state.coupons.items():
        rows = state.claim_rows(name)
        created = amounts.get(name) if amounts is not None else frozenset({amount})
        if not created:
            bad.append(f"{name}: a row (amount {amount}) that no create in the history made")
            continue
        if amount not in created:
            bad.append(f"{name}: amount {amount} in the table, created with {_one(created)}")
        if all(a != remaining + rows for a in created):
            said = "created with" if amounts is not None else "amount"
            bad.append(f"{name}: {said} {_one(created)} != remaining {remaining} + claims {rows}")
    if amounts is not None and history is not None:
        acked = {o.coupon for o in history if o.kind == "create" and o.result == "ok"}
        bad += [
            f"{c}: created (acknowledged) but no row"
            for c in sorted(acked & set(amounts) - set(state.coupons))
        ]
    return verdict_of(
        "conservation",
        bad,
        f"amount = remaining + claims for all {len(state.coupons)} coupons"
        + (", amounts as created" if amounts is not None else ", amounts from the table"),
        {
            "coupons": len(state.coupons),
            "violations": len(bad),
            "amounts_from": "history" if amounts is not None else "table",
        },
    )


def _one(amounts: frozenset[int]) -> str:
    return str(next(iter(amounts))) if len(amounts) == 1 else str(sorted(amounts))


@check("one_claim_per_user")
def one_claim_per_user(state: FinalState) -> Verdict:
    seen: dict[tuple[str, str], int] = {}
    for _, user, coupon in state.claims:
        seen[(user, coupon)] = seen.get((user, coupon), 0) + 1
    bad = [f"user {u} holds {n} claims on {c}" for (u, c), n in seen.items() if n > 1]
    return verdict_of(
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
    return verdict_of(
        "no_orphan_claims",
        bad,
        f"all {len(state.claims)} claims have a coupon",
        {"orphans": len(bad)},
    )


@check("no_negative_stock")
def no_negative_stock(state: FinalState) -> Verdict:
    bad = [f"{n}: remaining {r}" for n, (_, r) in state.coupons.items() if r < 0]
    bad += [f"{n}: remaining {r} > amount {a}" for n, (a, r) in state.coupons.items() if r > a]
    return verdict_of(
        "no_negative_stock", bad, "0 <= remaining <= amount everywhere", {"violations": len(bad)}
    )
