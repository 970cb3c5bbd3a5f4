"""The witness shrinker: a failing coupon's ops cut down to a small core that still fails.

The history is cut after the op the search could not place (linearizability is
prefix-closed), then ops are relaxed one chunk at a time (ops without effect
removed, effects made optional) while the rest still cannot be linearized.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import replace

from experiments.linearizability._model import INF, PreparedOp
from experiments.linearizability._search import search

__all__ = ["shrink_witness"]


def _relax(o: PreparedOp) -> PreparedOp | None:
    """A weaker op (None: drop it) such that a history that fails still fails weaker."""
    if not o.determinate:
        return o
    if not o.effectful:
        return None  # an op without effect constrains only itself
    return replace(o, determinate=False, result="unknown", complete=INF)


def _truncate(ops: Sequence[PreparedOp], at: int) -> list[PreparedOp]:
    """The history as it stood at time ``at``: later ops gone, ops in flight relaxed."""
    out: list[PreparedOp] = []
    for o in ops:
        if o.invoke > at:
            continue
        if o.complete > at:
            relaxed = _relax(o)
            if relaxed is not None:
                out.append(relaxed)
        else:
            out.append(o)
    return out


def shrink_witness(
    ops: Sequence[PreparedOp], initial: int | None, stuck: int, deadline: float
) -> tuple[list[PreparedOp], bool]:
    """A small sub-history that still cannot be linearized; True when fully shrunk."""

    def fails(candidate: Sequence[PreparedOp]) -> bool:
        check_deadline = min(deadline, time.monotonic() + 0.25)
        return search(candidate, initial, check_deadline).status is False

    current = list(ops)
    if 0 <= stuck < len(ops) and ops[stuck].determinate:
        cut = _truncate(ops, ops[stuck].complete)
        if fails(cut):
            current = cut
    chunk = max(1, len(current) // 2)
    while True:
        i = 0
        while i < len(current):
            if time.monotonic() > deadline:
                return current, False
            part = current[i : i + chunk]
            weaker = [w for w in (_relax(o) for o in part) if w is not None]
            if weaker != part:
                candidate = current[:i] + weaker + current[i + chunk :]
                if fails(candidate):
                    current = candidate
                    i += len(weaker)
                    continue
            i += chunk
        if chunk == 1:
            return current, True
        chunk = max(1, chunk // 2)
