"""Order checks: one coupon created while it is claimed."""

from __future__ import annotations

from experiments.checks._compose import ImpossibleHistory, check, verdict_of
from experiments.history import History, Op
from experiments.result import Verdict

__all__ = ["create_winner", "creates_won", "no_not_found_after_create", "no_success_before_create"]


def create_winner(history: History, coupon: str) -> Op | None:
    """The one successful create of ``coupon``; None if none (several: ``ImpossibleHistory``)."""
    wins = creates_won(history, coupon)
    if len(wins) > 1:
        raise ImpossibleHistory(
            f"{len(wins)} creates of {coupon} succeeded (ops {[o.op_id for o in wins]}):"
            " a name can be created once"
        )
    return wins[0] if wins else None


def creates_won(history: History, coupon: str) -> list[Op]:
    return [o for o in history if o.kind == "create" and o.coupon == coupon and o.result == "ok"]


@check("no_success_before_create")
def no_success_before_create(history: History, coupon: str) -> Verdict:
    """No claim of ``coupon`` succeeds (completes) before the winning create was invoked."""
    win = create_winner(history, coupon)
    ok = [o for o in history if o.kind == "claim" and o.coupon == coupon and o.result == "ok"]
    if win is None:
        bad = [f"claim {o.op_id} ok but no create succeeded" for o in ok]
        return verdict_of(
            "no_success_before_create",
            bad,
            "no create won and no claim succeeded",
            {"ok_claims": 0},
        )
    bad = [
        f"claim {o.op_id} completed {(win.invoke_ns - o.complete_ns) / 1e6:.3f} ms before the create began"
        for o in ok
        if o.complete_ns < win.invoke_ns
    ]
    return verdict_of(
        "no_success_before_create",
        bad,
        f"all {len(ok)} ok claims ended after the winning create began",
        {"ok_claims": len(ok), "violations": len(bad)},
    )


@check("no_not_found_after_create")
def no_not_found_after_create(history: History, coupon: str) -> Verdict:
    """No claim or get of ``coupon`` invoked after the winning create completed says not_found."""
    win = create_winner(history, coupon)
    nf = [
        o
        for o in history
        if o.kind in ("claim", "get") and o.coupon == coupon and o.result == "not_found"
    ]
    if win is None:
        return Verdict(
            "no_not_found_after_create",
            True,
            "no create won: every not_found is allowed",
            {"not_found": len(nf)},
        )
    bad = [
        f"{o.kind} {o.op_id} invoked {(o.invoke_ns - win.complete_ns) / 1e6:.3f} ms after the create ended got not_found"
        for o in nf
        if o.invoke_ns > win.complete_ns
    ]
    return verdict_of(
        "no_not_found_after_create",
        bad,
        f"all {len(nf)} not_found began before the winning create ended",
        {"not_found": len(nf), "violations": len(bad)},
    )
