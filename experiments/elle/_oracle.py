"""A brute-force oracle: is there a serial order of the committed txns explaining every read?"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from experiments.elle._history import Append, Key, Txn, Value

__all__ = ["serial_order"]


def _explains(order: Sequence[Txn]) -> bool:
    state: dict[Key, list[Value]] = {}
    for t in order:
        for op in t.ops:
            if isinstance(op, Append):
                state.setdefault(op.key, []).append(op.value)
            elif t.outcome == "ok" and tuple(state.get(op.key, ())) != (op.value or ()):
                return False
    return True


def serial_order(
    txns: Sequence[Txn], *, realtime: bool = False, limit: int = 9
) -> list[int] | None:
    """The ids of a serial order of the txns that took effect in which every read of an
    ok txn sees exactly the lists the appends before it built; None if none exists.

    Ok txns took effect, failed ones did not, unknown (info) ones either way (every
    subset is tried). ``realtime``: an ok txn that completed before another was invoked
    must come first (strict serializability). Tries every permutation: at most
    ``limit`` txns taking part.
    """
    ok = [t for t in txns if t.outcome == "ok"]
    info = [t for t in txns if t.outcome == "info"]
    if len(ok) + len(info) > limit:
        raise ValueError(f"the oracle tries every order: at most {limit} txns")
    for r in range(len(info) + 1):
        for chosen in itertools.combinations(info, r):
            for order in itertools.permutations([*ok, *chosen]):
                if realtime and any(
                    a.outcome == "ok" and a.complete_ns < b.invoke_ns
                    for i, b in enumerate(order)
                    for a in order[i + 1 :]
                ):
                    continue
                if _explains(order):
                    return [t.id for t in order]
    return None
