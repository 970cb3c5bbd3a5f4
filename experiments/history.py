"""The history of an experiment: one record per operation, as Jepsen keeps it.

Each record holds the operation (kind, coupon, user, amount), who ran it (worker),
when (invoke and complete on the monotonic clock, in ns), and how it ended:

    outcome  ok        it happened
             fail      it did not happen (a clean refusal: no stock, not found, ...)
             unknown   it may or may not have happened (timeout, lost connection)

``result`` names the outcome kind, the same on every layer (see ``RESULT_KINDS``);
``http_status`` is set when the operation went over HTTP.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "INDETERMINATE",
    "OP_KINDS",
    "RESULT_KINDS",
    "History",
    "Op",
    "OpKind",
    "Outcome",
    "ResultKind",
    "outcome_of",
]

OpKind = Literal["create", "claim", "get"]
Outcome = Literal["ok", "fail", "unknown"]
ResultKind = Literal[
    "ok",
    "coupon_exists",
    "not_found",
    "already_claimed",
    "no_stock",
    "invalid",
    "unavailable",
    "unknown",
    "server_error",
]
OP_KINDS: tuple[OpKind, ...] = ("create", "claim", "get")
RESULT_KINDS: tuple[ResultKind, ...] = (
    "ok",
    "coupon_exists",
    "not_found",
    "already_claimed",
    "no_stock",
    "invalid",
    "unavailable",
    "unknown",
    "server_error",
)

#: Results after which the operation's effect is not known. ``unavailable`` belongs
#: here: a connection lost during COMMIT reports it although the write may have landed.
INDETERMINATE: frozenset[str] = frozenset({"unknown", "unavailable", "server_error"})


def outcome_of(result: str) -> Outcome:
    if result == "ok":
        return "ok"
    return "unknown" if result in INDETERMINATE else "fail"


@dataclass(slots=True)
class Op:
    """One operation of a history, from invocation to completion."""

    op_id: int
    worker: int
    kind: OpKind
    coupon: str
    user: str | None = None
    amount: int | None = None
    invoke_ns: int = 0
    complete_ns: int = 0
    result: ResultKind = "unknown"
    http_status: int | None = None
    message: str | None = None
    #: What a successful get read: {"remaining_amount": int, "claimed_by": [...]}
    value: dict[str, Any] | None = None
    #: Labels set by the experiment (e.g. the fault phase the op ran in).
    phase: str | None = None

    @property
    def outcome(self) -> Outcome:
        return outcome_of(self.result)

    @property
    def latency_ns(self) -> int:
        return self.complete_ns - self.invoke_ns


@dataclass
class History:
    """An append-only, thread-safe list of operations with a common time origin."""

    ops: list[Op] = field(default_factory=list)
    origin_ns: int = field(default_factory=time.monotonic_ns)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def append(self, op: Op) -> None:
        with self._lock:
            self.ops.append(op)

    def extend(self, ops: Iterable[Op]) -> None:
        with self._lock:
            self.ops.extend(ops)

    def discard(self, predicate: Callable[[Op], bool]) -> int:
        """Remove the ops ``predicate`` selects (e.g. ops that never started); returns how many."""
        with self._lock:
            kept = [o for o in self.ops if not predicate(o)]
            dropped = len(self.ops) - len(kept)
            self.ops = kept
        return dropped

    def __iter__(self) -> Iterator[Op]:
        return iter(sorted(self.ops, key=lambda o: (o.invoke_ns, o.op_id)))

    def __len__(self) -> int:
        return len(self.ops)

    def of_kind(self, kind: OpKind) -> list[Op]:
        return [o for o in self if o.kind == kind]

    def counts(self) -> dict[str, dict[str, int]]:
        """``{"claim": {"ok": 1, "no_stock": 99}, ...}``: outcome kinds per operation kind."""
        out: dict[str, dict[str, int]] = {}
        for op in self.ops:
            by_kind = out.setdefault(op.kind, {})
            by_kind[op.result] = by_kind.get(op.result, 0) + 1
        return {k: dict(sorted(v.items())) for k, v in sorted(out.items())}

    def to_frame(self) -> pd.DataFrame:
        """One row per operation; times in seconds from the history's origin."""
        import pandas as pd

        rows = []
        for op in self:
            row = asdict(op)
            row["outcome"] = op.outcome
            row["t_invoke_s"] = (op.invoke_ns - self.origin_ns) / 1e9
            row["t_complete_s"] = (op.complete_ns - self.origin_ns) / 1e9
            row["latency_ms"] = op.latency_ns / 1e6
            rows.append(row)
        columns = [*Op.__slots__, "outcome", "t_invoke_s", "t_complete_s", "latency_ms"]
        return pd.DataFrame(rows, columns=columns)

    def save(self, path: Path | str) -> Path:
        """Write the history as JSON lines (exact integers, no rounding)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", encoding="utf-8") as f:
            f.write(json.dumps({"origin_ns": self.origin_ns}) + "\n")
            for op in self:
                f.write(json.dumps(asdict(op), ensure_ascii=False) + "\n")
        return path

    @classmethod
    def load(cls, path: Path | str) -> History:
        with Path(path).open(encoding="utf-8") as f:
            header = json.loads(f.readline())
            ops = [Op(**json.loads(line)) for line in f if line.strip()]
        return cls(ops=ops, origin_ns=int(header["origin_ns"]))
