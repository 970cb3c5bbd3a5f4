"""The history model: transactions of list-append micro-ops, with their outcome and times."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass
from typing import Literal

__all__ = ["Append", "Key", "MicroOp", "Outcome", "Read", "Txn", "Value"]

Key = Hashable
Value = Hashable
#: Jepsen's words: ``ok`` committed, ``fail`` did not, ``info`` unknown (a timeout).
Outcome = Literal["ok", "fail", "info"]


@dataclass(frozen=True)
class Append:
    """Append ``value`` to the list at ``key`` (values are unique per key)."""

    key: Key
    value: Value


@dataclass(frozen=True)
class Read:
    """Read the list at ``key``; ``value`` is what was seen (None: not known, as for a
    transaction that failed or whose outcome is unknown)."""

    key: Key
    value: tuple[Value, ...] | None = None


MicroOp = Append | Read


@dataclass(frozen=True)
class Txn:
    """One transaction: its micro-ops in order, how it ended, who ran it and when.

    ``invoke_ns`` and ``complete_ns`` are monotonic times; ``complete_ns`` of an
    ``info`` transaction is when the client gave up, not when (or whether) it took
    effect, so it orders nothing.
    """

    id: int
    ops: tuple[MicroOp, ...]
    outcome: Outcome = "ok"
    process: int = 0
    invoke_ns: int = 0
    complete_ns: int = 0

    def __str__(self) -> str:
        parts = []
        for op in self.ops:
            if isinstance(op, Append):
                parts.append(f"append({op.key!r}, {op.value!r})")
            else:
                seen = "?" if op.value is None else list(op.value)
                parts.append(f"read({op.key!r}) -> {seen}")
        return f"T{self.id} [{self.outcome}, p{self.process}]: " + "; ".join(parts)
