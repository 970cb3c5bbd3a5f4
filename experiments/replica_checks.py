"""Checks of a replicated run: lost acknowledged claims, stale reads, the unavailability window.

* ``no_lost_acknowledged_claims``: every claim the history shows acknowledged (``ok``)
  is a row of the survivor (the promoted primary); the lost ones are listed.
* ``lost_claims_on_old_primary``: the evidence behind a loss: every claim named lost
  is a row of the old primary (started alone after the run) and absent from the new.
* ``stale_reads``: reads that provably showed an older state than the primary's at
  their start: a claimant missing whose claim was acknowledged before the read was
  invoked, or a stock above ``amount - claims acknowledged before the read``, where
  ``amount`` is what the coupon was created with (its acknowledged create in the
  history, else the plan's), never the final table's. No model, no search: counting
  over the history alone; each comes with its two-op witness.
* ``unavailability``: first op refused after the primary went down, to the first
  success after the promotion (a window for the timeline).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from experiments.checks import FinalState, created_amounts
from experiments.faults.window import Window
from experiments.history import INDETERMINATE, History, Op
from experiments.result import Verdict

__all__ = [
    "lost_acknowledged_claims",
    "lost_claims_on_old_primary",
    "no_lost_acknowledged_claims",
    "stale_reads",
    "stale_reads_observed",
    "unavailability",
]

_MAX_LISTED = 50


def _claim_key(op: Op) -> tuple[str, str]:
    return (str(op.user), op.coupon)


def lost_acknowledged_claims(history: History, state: FinalState) -> list[Op]:
    """The claims acknowledged ``ok`` whose row the final state does not have."""
    rows = {(user, coupon) for _, user, coupon in state.claims}
    acked = [o for o in history if o.kind == "claim" and o.result == "ok"]
    return [o for o in acked if _claim_key(o) not in rows]


def _listed(ops: Iterable[Op]) -> list[dict[str, Any]]:
    return [{"op_id": o.op_id, "user": o.user, "coupon": o.coupon} for o in ops]


def no_lost_acknowledged_claims(history: History, state: FinalState) -> Verdict:
    """Every acknowledged claim survived; the lost ones are named in ``figures["lost"]``."""
    acked = sum(1 for o in history.ops if o.kind == "claim" and o.result == "ok")
    lost = lost_acknowledged_claims(history, state)
    figures = {
        "acknowledged": acked,
        "lost_count": len(lost),
        "lost": _listed(lost[:_MAX_LISTED]),
        "lost_op_ids": [o.op_id for o in lost],
    }
    if not lost:
        return Verdict(
            "no_lost_acknowledged_claims",
            True,
            f"all {acked} acknowledged claims survived",
            figures,
        )
    named = ", ".join(f"op {o.op_id} ({o.user} on {o.coupon})" for o in lost[:5])
    more = f" and {len(lost) - 5} more" if len(lost) > 5 else ""
    return Verdict(
        "no_lost_acknowledged_claims",
        False,
        f"{len(lost)} of {acked} acknowledged claims are not on the survivor: {named}{more}",
        figures,
    )


def lost_claims_on_old_primary(lost: list[Op], old: FinalState | None, new: FinalState) -> Verdict:
    """Each lost claim is a row of the old primary and not of the new one (the evidence)."""
    name = "lost_claims_on_old_primary"
    if not lost:
        return Verdict(name, True, "no claim was lost", {"lost_count": 0})
    if old is None:
        return Verdict(name, None, "the old primary could not be read", {"lost_count": len(lost)})
    old_rows = {(u, c) for _, u, c in old.claims}
    new_rows = {(u, c) for _, u, c in new.claims}
    missing = [o for o in lost if _claim_key(o) not in old_rows]
    present = [o for o in lost if _claim_key(o) in new_rows]
    figures = {
        "lost_count": len(lost),
        "on_old_primary": len(lost) - len(missing),
        "not_on_old_primary": _listed(missing[:_MAX_LISTED]),
        "on_new_primary": _listed(present[:_MAX_LISTED]),
        "old_primary_claims": len(old_rows),
        "new_primary_claims": len(new_rows),
    }
    passed = not missing and not present
    detail = (
        f"all {len(lost)} lost claims are rows of the old primary, none of the new one"
        if passed
        else f"{len(missing)} lost claims not on the old primary, {len(present)} on the new one"
    )
    return Verdict(name, passed, detail, figures)


def stale_reads(history: History, planned: Mapping[str, int] | None = None) -> list[dict[str, Any]]:
    """Reads that showed a state older than one acknowledged before they began.

    Each coupon's amount is the one it was created with: its acknowledged create in
    the history (the plan's setup creates are in it), else ``planned`` (the plan's
    figure for a coupon created outside the history); a figure from the final table
    is never the baseline. A read ``g`` is stale when a claim acknowledged before
    ``g`` was invoked is missing from its ``claimed_by``, or its ``remaining_amount``
    exceeds ``amount - (claims acknowledged before g)``: the primary had at most that
    much left when ``g`` began. Each entry names the read, the claim it missed (the
    two-op witness) and how far behind it was.
    """
    amounts = {**(planned or {}), **_created(history)}
    by_coupon: dict[str, list[Op]] = {}
    for o in history.ops:
        if o.kind == "claim" and o.result == "ok":
            by_coupon.setdefault(o.coupon, []).append(o)
    for claims in by_coupon.values():
        claims.sort(key=lambda o: o.complete_ns)
    out: list[dict[str, Any]] = []
    for g in history:
        if g.kind != "get" or g.result != "ok" or not g.value or g.coupon not in amounts:
            continue
        before = [c for c in by_coupon.get(g.coupon, []) if c.complete_ns < g.invoke_ns]
        claimed = {str(u) for u in g.value.get("claimed_by") or []}
        remaining = g.value.get("remaining_amount")
        missed = [c for c in before if str(c.user) not in claimed]
        bound = amounts[g.coupon] - len(before)
        above = remaining is not None and int(remaining) > bound
        if not missed and not above:
            continue
        witness = missed[-1] if missed else before[-1]
        out.append(
            {
                "read_op_id": g.op_id,
                "coupon": g.coupon,
                "missed_claim_op_id": witness.op_id,
                "missed_claims": len(missed),
                "remaining_read": remaining,
                "primary_at_most": bound,
                "behind_ms": round((g.invoke_ns - witness.complete_ns) / 1e6, 3),
            }
        )
    return out


def _created(history: History) -> dict[str, int]:
    """Each coupon's amount by the history's creates: the largest it may have (a create
    whose answer was lost may have made it), so no read is called stale for want of it."""
    return {c: max(a) for c, a in created_amounts(history).items()}


def stale_reads_observed(history: History, planned: Mapping[str, int] | None = None) -> Verdict:
    """The proof that stale reads occurred (a figure, not a pass/fail of the service).

    ``passed`` is True when no read was stale. The shortest witness (the read that
    missed a claim acknowledged the least time before it) is in ``witness_op_ids``.
    """
    stale = stale_reads(history, planned)
    reads = sum(1 for o in history.ops if o.kind == "get" and o.result == "ok")
    figures: dict[str, Any] = {
        "reads": reads,
        "stale": len(stale),
        "examples": stale[:10],
    }
    if not stale:
        return Verdict("stale_reads", True, f"none of {reads} reads was stale", figures)
    shortest = min(stale, key=lambda s: s["behind_ms"])
    figures["witness_op_ids"] = [shortest["missed_claim_op_id"], shortest["read_op_id"]]
    figures["max_behind_ms"] = max(s["behind_ms"] for s in stale)
    return Verdict(
        "stale_reads",
        False,
        f"{len(stale)} of {reads} reads were stale: read op {shortest['read_op_id']} missed "
        f"claim op {shortest['missed_claim_op_id']} acknowledged {shortest['behind_ms']:.1f} ms "
        "before it began",
        figures,
    )


def unavailability(history: History, down_ns: int | None, promoted_ns: int | None) -> Window | None:
    """From the first op refused once the primary went down to the first success after promotion."""
    if down_ns is None:
        return None
    load = [o for o in history.ops if o.phase != "setup"]
    # The ops the outage failed: they ended after the primary went down, without an
    # answer. The window opens at the earliest invoke among them (an op blocked by a
    # cut link before the kill was already waiting then).
    failed = [o.invoke_ns for o in load if o.result in INDETERMINATE and o.complete_ns >= down_ns]
    start = min([down_ns, *failed])
    after = promoted_ns if promoted_ns is not None else down_ns
    oks = sorted(o.complete_ns for o in load if o.result == "ok" and o.invoke_ns >= after)
    if not oks:
        return None
    return Window("failover", "unavailable", start, oks[0])
