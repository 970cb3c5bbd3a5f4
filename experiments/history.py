"""The history of an experiment: one record per operation, as Jepsen keeps it.

Each record holds the operation (kind, coupon, user, amount), who ran it (worker),
when (invoke and complete on the monotonic clock, in ns), and how it ended:

    outcome  ok        it happened
             fail      it did not happen (a clean refusal: no stock, not found, ...)
             unknown   it may or may not have happened (timeout, lost connection)

``result`` names the outcome kind, the same on every layer (see ``RESULT_KINDS``);
``http_status`` is set when the operation went over HTTP; an answer outside the
HTTP contract ends ``contract_violation`` with its ``body`` kept.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

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
    "collision",
    "outcome_of",
    "peak_in_flight",
    "winner_overlap",
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
    "contract_violation",
]
#: The literals above as tuples, in their order (one list of names, not two).
OP_KINDS: tuple[OpKind, ...] = get_args(OpKind)
RESULT_KINDS: tuple[ResultKind, ...] = get_args(ResultKind)

#: Results after which the operation's effect is not known. ``unavailable`` belongs
#: here: a connection lost during COMMIT reports it although the write may have landed.
#: So does ``contract_violation``: an answer outside the contract says nothing reliable
#: about what the server did.
INDETERMINATE: frozenset[str] = frozenset(
    {"unknown", "unavailable", "server_error", "contract_violation"}
)


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
    #: The body of an HTTP answer that broke the contract (first 500 characters).
    body: str | None = None

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
                # ASCII escapes: hostile input holds lone surrogates ("\\ud800"), which no
                # UTF-8 file can carry raw; escaped, they load back exactly.
                f.write(json.dumps(asdict(op)) + "\n")
        return path

    @classmethod
    def load(cls, path: Path | str) -> History:
        with Path(path).open(encoding="utf-8") as f:
            header = json.loads(f.readline())
            ops = [Op(**json.loads(line)) for line in f if line.strip()]
        return cls(ops=ops, origin_ns=int(header["origin_ns"]))


# -- how much the operations overlapped ----------------------------------------------


def peak_in_flight(ops: Iterable[Op]) -> int:
    """The most operations in flight at one instant (invoked and not yet complete).

    An op completing at the very instant another is invoked does not overlap it.
    """
    events: list[tuple[int, int]] = []
    for o in ops:
        if o.complete_ns >= o.invoke_ns > 0:
            events.append((o.invoke_ns, 1))
            events.append((o.complete_ns, -1))
    # At equal times completions (-1) sort first: touching is not overlapping.
    events.sort()
    peak = now = 0
    for _, step in events:
        now += step
        peak = max(peak, now)
    return peak


def winner_overlap(ops: Iterable[Op]) -> tuple[Op | None, float | None]:
    """The winner (the first op to complete ``ok``, a claim where there is one) and the
    share of the other ops whose interval overlapped it: 1.0 when every other op was in
    flight while the winner ran, near 0 when the others came after it (a serial run)."""
    timed = [o for o in ops if o.complete_ns >= o.invoke_ns > 0]
    oks = [o for o in timed if o.result == "ok"]
    pool = [o for o in oks if o.kind == "claim"] or oks
    if not pool:
        return None, None
    win = min(pool, key=lambda o: (o.complete_ns, o.op_id))
    others = [o for o in timed if o is not win]
    if not others:
        return win, None
    hit = sum(1 for o in others if o.invoke_ns < win.complete_ns and o.complete_ns > win.invoke_ns)
    return win, hit / len(others)


def collision(ops: Iterable[Op], workers: int) -> dict[str, Any]:
    """How much a run's operations collided: peak in flight (and its share of the
    workers), and the share of operations that overlapped the winner."""
    listed = list(ops)
    peak = peak_in_flight(listed)
    win, share = winner_overlap(listed)
    return {
        "peak_in_flight": peak,
        "peak_in_flight_share": round(peak / workers, 3) if workers > 0 else None,
        "overlap_with_winner": None if share is None else round(share, 3),
        "winner_op_id": None if win is None else win.op_id,
    }
