"""Fail a claim between its insert and its stock decrement (the service's ``after_insert`` hook)."""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

import psycopg

__all__ = ["AFTER_INSERT", "FailAfterInsert", "InjectedFault", "after_insert_absent", "chain_hooks"]

#: The strategies whose claims call the service's fault hook at ``after_insert`` (the
#: point between the claim row's insert and the stock decrement). A declaration, not an
#: observation: a claim that should reach the point and never does is the lab's (or
#: the service's) defect, and the fault check fails; only a strategy absent from here
#: has its fault check skipped. ``tests/experiments/test_faults_partial.py`` holds it
#: to every registered strategy's code (one claim each, the hook counting).
AFTER_INSERT: frozenset[str] = frozenset(
    {"row_lock", "row_lock_pipelined", "advisory", "serializable", "mutant:check_then_insert"}
)
#: Why a strategy has no such point, where the reason is known.
_NO_POINT: dict[str, str] = {
    "atomic": "its claim is one statement: no boundary between insert and decrement to fail at",
}


def after_insert_absent(strategy: str) -> str | None:
    """Why ``strategy``'s claims never reach ``after_insert``; None when they do."""
    if strategy in AFTER_INSERT:
        return None
    return _NO_POINT.get(strategy, "its claims call no fault hook at after_insert")


class InjectedFault(psycopg.OperationalError):
    """The lab's failure between two statements of a claim.

    An ``OperationalError`` because that is what a real failure there looks like (a
    connection lost mid-transaction): the service translates it into ``Unavailable``,
    and the transaction must roll back, insert included.
    """


@dataclass
class FailAfterInsert:
    """Raises ``InjectedFault`` at ``after_insert`` for chosen claims.

    Chosen by ``every`` (each n-th claim that reaches the point) or ``rate`` (a
    seeded coin per claim), at most ``max_failures`` times.
    """

    rate: float = 0.0
    every: int = 0
    max_failures: int = 1_000
    seed: int = 0
    reached: int = 0
    failed: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        if not (self.every > 0 or 0.0 < self.rate <= 1.0):
            raise ValueError("choose claims to fail: every > 0 or 0 < rate <= 1")
        self._rng = random.Random(self.seed)

    def __call__(self, point: str) -> None:
        if point != "after_insert":
            return
        with self._lock:
            self.reached += 1
            if self.failed >= self.max_failures:
                return
            hit = (self.reached % self.every == 0) if self.every else self._rng.random() < self.rate
            if not hit:
                return
            self.failed += 1
            n = self.failed
        raise InjectedFault(f"injected failure #{n} between claim insert and stock decrement")


def chain_hooks(*hooks: Callable[[str], None] | None) -> Callable[[str], None]:
    """One fault hook that calls several in order (e.g. a pause, then a failure)."""
    live = [h for h in hooks if h is not None]

    def hook(point: str) -> None:
        for h in live:
            h(point)

    return hook
