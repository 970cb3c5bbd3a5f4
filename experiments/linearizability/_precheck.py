"""Counting prechecks: contradictions a coupon's ops show before any search.

Each is a necessary condition of linearizability that counting alone can refute (a
second create, a double claim, more wins than stock, a read that cannot add up): a
failure found here costs no search, and its witness names only the ops behind it.
"""

from __future__ import annotations

from collections.abc import Sequence

from experiments.linearizability._model import CLAIM, CREATE, PreparedOp, precedes

__all__ = ["precheck"]


def precheck(ops: Sequence[PreparedOp], initial: int | None) -> tuple[str, list[int]] | None:
    """A contradiction found by counting, with the ops behind it; None when none is."""
    by_complete = sorted(ops, key=lambda o: (o.complete, o.op_id))
    ok_creates = [o for o in by_complete if o.effectful and o.kind == CREATE]
    if len(ok_creates) > 1 or (ok_creates and initial is not None):
        return "the coupon was created twice", [o.op_id for o in ok_creates[:2]]
    ok_claims = [o for o in by_complete if o.effectful and o.kind == CLAIM]
    seen: dict[int, PreparedOp] = {}
    for o in ok_claims:
        if o.user in seen:
            return "one user claimed the coupon twice", [seen[o.user].op_id, o.op_id]
        seen[o.user] = o
    if ok_creates:
        stock, sources = ok_creates[0].amount, [ok_creates[0]]
    elif initial is not None:
        stock, sources = initial, []
    else:
        maybe = [o for o in ops if o.kind == CREATE and not o.determinate]
        stock = max((o.amount for o in maybe), default=0)
        sources = [max(maybe, key=lambda o: o.amount)] if maybe else []
    amounts = {o.amount for o in ops if o.kind == CREATE} if not ok_creates else {stock}
    if initial is not None:
        amounts = {initial}
    if ok_claims and not sources and initial is None:
        return "a claim succeeded on a coupon never created", [ok_claims[0].op_id]
    if len(ok_claims) > stock:
        witness = [o.op_id for o in sources] + [o.op_id for o in ok_claims[: stock + 1]]
        return f"{len(ok_claims)} successful claims on a stock of {stock}", witness
    for g in ops:
        if g.claimed_twice:
            return "a read lists one claimant twice (one claim per user)", [g.op_id]
    for g in ops:
        if g.read_amount is not None and g.read_amount not in amounts:
            why = f"a read's amount {g.read_amount} is not the amount the coupon was created with"
            return why, [o.op_id for o in sources] + [g.op_id]
    for g in ops:
        if g.remaining is None or g.claimed is None:
            continue
        if all(a - len(g.claimed) != g.remaining for a in amounts):
            why = "a read's remaining stock does not match its number of claimants"
            return why, [o.op_id for o in sources] + [g.op_id]
    for g in ops:
        if g.claimed is None:
            continue
        # A stale read: it misses a claim acknowledged before it was even invoked.
        for ack in ok_claims:
            if precedes(ack, g) and ack.user not in g.claimed:
                why = "a read misses a claim acknowledged before the read began (a stale read)"
                return why, [ack.op_id, g.op_id]
    claimers: dict[int, list[PreparedOp]] = {}
    for o in ops:
        if o.kind == CLAIM and (o.result == "ok" or not o.determinate):
            claimers.setdefault(o.user, []).append(o)
    for g in ops:
        if g.claimed is None:
            continue
        for u in g.claimed:
            could = claimers.get(u, [])
            if all(precedes(g, c) for c in could):
                why = "a read lists a claimant with no claim that could have happened before it"
                return why, [g.op_id] + [c.op_id for c in could[:1]]
    return None
