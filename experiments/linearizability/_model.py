"""The sequential coupon model the checker runs ops against, and ops in the form it reads.

Sequential model per coupon: ``(exists, amount, remaining, claimants)``.

* create: ``ok`` if the coupon does not exist, else ``coupon_exists``.
* claim: ``not_found``, ``already_claimed``, ``no_stock`` in that order, else ``ok``.
* get: ``not_found``, or the value (``remaining_amount``; ``claimed_by`` as a set).

``invalid`` results never touch state and are left out. Indeterminate results
(``experiments.history.INDETERMINATE``) may take effect at any point after their
invoke, or never: their completion is infinity and they may be dropped.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from experiments.history import INDETERMINATE, Op

__all__ = ["CLAIM", "CREATE", "GET", "INF", "PreparedOp", "expected", "prepare"]

CREATE, CLAIM, GET = 0, 1, 2
_KIND_CODES = {"create": CREATE, "claim": CLAIM, "get": GET}
INF = 1 << 62


@dataclass(frozen=True, slots=True)
class PreparedOp:
    """One op of a coupon's partition, in the form the search needs."""

    op_id: int
    kind: int
    result: str  # the recorded result; meaningless when not determinate
    determinate: bool
    user: int  # interned user id, -1 when none
    amount: int
    invoke: int
    complete: int  # INF when indeterminate
    remaining: int | None = None  # a successful get's remaining_amount, when recorded
    claimed: frozenset[int] | None = None  # a successful get's claimed_by, when recorded

    @property
    def effectful(self) -> bool:
        """Whether the recorded outcome changed the coupon (an ok create or claim)."""
        return self.determinate and self.result == "ok" and self.kind != GET


def prepare(ops: Iterable[Op], users: dict[str, int]) -> list[PreparedOp]:
    """``ops`` (one coupon's) as the search reads them; ``users`` interns user ids."""
    out: list[PreparedOp] = []
    for op in ops:
        if op.result == "invalid":
            continue  # rejected before touching state
        determinate = op.result not in INDETERMINATE
        kind = _KIND_CODES[op.kind]
        if kind == GET and not determinate:
            continue  # a read with no answer constrains nothing
        user = -1
        if op.user is not None:
            user = users.setdefault(op.user, len(users))
        remaining: int | None = None
        claimed: frozenset[int] | None = None
        if kind == GET and op.result == "ok" and op.value is not None:
            raw_remaining = op.value.get("remaining_amount")
            remaining = int(raw_remaining) if raw_remaining is not None else None
            raw_claimed = op.value.get("claimed_by")
            if raw_claimed is not None:
                claimed = frozenset(users.setdefault(str(u), len(users)) for u in raw_claimed)
        complete = max(op.complete_ns, op.invoke_ns) if determinate else INF
        out.append(
            PreparedOp(
                op_id=op.op_id,
                kind=kind,
                result=op.result,
                determinate=determinate,
                user=user,
                amount=op.amount if op.amount is not None else 0,
                invoke=op.invoke_ns,
                complete=complete,
                remaining=remaining,
                claimed=claimed,
            )
        )
    return out


def expected(op: PreparedOp, exists: bool, remaining: int, claimants: set[int]) -> tuple[str, bool]:
    """What the sequential service answers to ``op`` now, and whether it changes state."""
    if op.kind == CREATE:
        return ("coupon_exists", False) if exists else ("ok", True)
    if not exists:
        return "not_found", False
    if op.kind == GET:
        return "ok", False
    if op.user in claimants:
        return "already_claimed", False
    if remaining <= 0:
        return "no_stock", False
    return "ok", True
