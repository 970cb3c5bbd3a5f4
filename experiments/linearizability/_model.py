"""The sequential coupon model the checker runs ops against, and ops in the form it reads.

Sequential model per coupon: ``(exists, amount, remaining, claimants)``.

* create: ``ok`` if the coupon does not exist, else ``coupon_exists``.
* claim: ``not_found``, ``already_claimed``, ``no_stock`` in that order, else ``ok``.
* get: ``not_found``, or the value: every field of a read is modelled, ``amount``
  (the created amount), ``remaining_amount``, and ``claimed_by`` as a list: the
  claimants, each once (a list naming a user twice fits no state). The list's order
  ("claim order", by the claim rows' serial ids) is not modelled: an id is drawn at
  INSERT, not at COMMIT, so two concurrent claims may commit in the other order.

``invalid`` results never touch state and are left out. Indeterminate results
(``experiments.history.INDETERMINATE``) may take effect at any point after their
invoke, or never: their completion is infinity and they may be dropped.

Clocks (``prepare(..., clocks=...)``): ops recorded by several processes (Locust
workers) carry their process in ``phase``, and each process's clock is known to the
master's within an uncertainty. Between processes an op's interval is widened by its
process's uncertainty (invoke earlier, complete later: no order is claimed that the
clocks cannot vouch for); ops of one process share one clock and keep their own
order exactly (``own_invoke``/``own_complete``, unwidened), so a widening never lets
a process's later op be placed before its earlier one.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from experiments.history import INDETERMINATE, Op

__all__ = ["CLAIM", "CREATE", "GET", "INF", "PreparedOp", "expected", "precedes", "prepare"]

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
    read_amount: int | None = None  # a successful get's amount, when recorded
    claimed_twice: tuple[int, ...] = ()  # users a get's claimed_by lists more than once
    #: The process clock the op was timed on (interned phase; -1: the master's own),
    #: and its times on that clock, unwidened (``invoke``/``complete`` are widened).
    clock: int = -1
    own_invoke: int = 0
    own_complete: int = 0

    @property
    def effectful(self) -> bool:
        """Whether the recorded outcome changed the coupon (an ok create or claim)."""
        return self.determinate and self.result == "ok" and self.kind != GET


def precedes(a: PreparedOp, b: PreparedOp) -> bool:
    """Whether ``a`` certainly completed before ``b`` was invoked (real-time order).

    Across clocks, by the widened intervals; on one process clock, by its own times.
    """
    if not a.determinate:
        return False
    if a.complete < b.invoke:
        return True
    return a.clock >= 0 and a.clock == b.clock and a.own_complete < b.own_invoke


def prepare(
    ops: Iterable[Op], users: dict[str, int], clocks: Mapping[str, int] | None = None
) -> list[PreparedOp]:
    """``ops`` (one coupon's) as the search reads them; ``users`` interns user ids.

    ``clocks`` maps a phase to the clock uncertainty (ns) of the process whose ops
    carry it (see the module); ops of other phases are on the master's clock.
    """
    out: list[PreparedOp] = []
    phases: dict[str, int] = {}
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
        read_amount: int | None = None
        twice: tuple[int, ...] = ()
        if kind == GET and op.result == "ok" and op.value is not None:
            raw_remaining = op.value.get("remaining_amount")
            remaining = int(raw_remaining) if raw_remaining is not None else None
            raw_amount = op.value.get("amount")
            read_amount = int(raw_amount) if raw_amount is not None else None
            raw_claimed = op.value.get("claimed_by")
            if raw_claimed is not None:
                listed = [users.setdefault(str(u), len(users)) for u in raw_claimed]
                claimed = frozenset(listed)
                twice = tuple(sorted(u for u, n in Counter(listed).items() if n > 1))
        own_complete = max(op.complete_ns, op.invoke_ns)
        widen = clocks.get(op.phase or "", 0) if clocks else 0
        clock = phases.setdefault(str(op.phase), len(phases)) if widen > 0 else -1
        out.append(
            PreparedOp(
                op_id=op.op_id,
                kind=kind,
                result=op.result,
                determinate=determinate,
                user=user,
                amount=op.amount if op.amount is not None else 0,
                invoke=op.invoke_ns - widen,
                complete=own_complete + widen if determinate else INF,
                remaining=remaining,
                claimed=claimed,
                read_amount=read_amount,
                claimed_twice=twice,
                clock=clock,
                own_invoke=op.invoke_ns,
                own_complete=own_complete if determinate else INF,
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
