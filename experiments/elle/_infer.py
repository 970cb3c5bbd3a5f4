"""List-append inference: version orders from reads, the anomalies reads alone show, and
the ww / wr / rw edges between transactions (Elle's ``elle.list-append``)."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.elle._graph import PROCESS, REALTIME, RW, WR, WW, DepGraph
from experiments.elle._history import Append, Key, Read, Txn, Value

__all__ = ["Inference", "infer"]


@dataclass
class Inference:
    """What the reads tell: each key's version order, the non-cycle anomalies, the graph."""

    graph: DepGraph
    orders: dict[Key, tuple[Value, ...]]
    #: Anomaly class -> cases (each a dict with a human-readable ``why``).
    anomalies: dict[str, list[dict[str, Any]]] = field(default_factory=dict)

    def flag(self, kind: str, why: str, **figures: Any) -> None:
        self.anomalies.setdefault(kind, []).append({"why": why, **figures})


def _is_prefix(a: Sequence[Value], b: Sequence[Value]) -> bool:
    return len(a) <= len(b) and tuple(b[: len(a)]) == tuple(a)


def infer(
    txns: Sequence[Txn], *, process: bool = False, realtime: bool = False, check: Callable[[], None]
) -> Inference:
    """Build the dependency graph of ``txns`` (ok, and info ones whose writes were seen)."""
    by_id = {t.id: t for t in txns}
    if len(by_id) != len(txns):
        raise ValueError("transaction ids must be unique")
    # Who appended each (key, value), and whether it was that txn's last append to key.
    writer: dict[tuple[Key, Value], int] = {}
    appended: dict[Key, list[Value]] = defaultdict(list)
    final_append: dict[tuple[int, Key], Value] = {}
    inf = Inference(DepGraph(), {})
    for t in txns:
        for op in t.ops:
            if isinstance(op, Append):
                if (op.key, op.value) in writer:
                    inf.flag(
                        "duplicate-appends",
                        f"{op.value!r} was appended to {op.key!r} twice"
                        f" (T{writer[(op.key, op.value)]} and T{t.id}): values must be unique",
                    )
                    continue
                writer[(op.key, op.value)] = t.id
                appended[op.key].append(op.value)
                final_append[(t.id, op.key)] = op.value

    # Version orders: the longest read of each key; every other read must be its prefix.
    reads: dict[Key, list[tuple[int, tuple[Value, ...]]]] = defaultdict(list)
    for t in txns:
        if t.outcome != "ok":
            continue  # a read of a failed or unknown txn was never returned
        own: dict[Key, list[Value]] = defaultdict(list)
        for op in t.ops:
            check()
            if isinstance(op, Append):
                own[op.key].append(op.value)
                continue
            seen = op.value if op.value is not None else ()
            if len(set(seen)) != len(seen):
                inf.flag("duplicate-elements", f"T{t.id} read {op.key!r} as {list(seen)}")
            mine = own.get(op.key, [])
            # Internal consistency: a read shows this txn's own earlier appends last,
            # and none of its later ones.
            later = {v for v in _later_appends(t, op) if v not in mine}
            if (mine and tuple(seen[-len(mine) :]) != tuple(mine)) or (
                later and not later.isdisjoint(seen)
            ):
                inf.flag(
                    "internal",
                    f"T{t.id} read {op.key!r} as {list(seen)} after appending {mine}",
                    txn=t.id,
                )
            external = tuple(seen[: len(seen) - len(mine)]) if mine else tuple(seen)
            reads[op.key].append((t.id, external))
    for t in txns:
        for op in t.ops:
            if isinstance(op, Append):
                reads.setdefault(op.key, [])
    # Committed: ok txns, and unknown ones whose appends some ok read observed. A read
    # that is a prefix of its key's longest shows nothing the longest does not, so only
    # the longest and the reads off it are walked value by value: the walk is linear in
    # the distinct values, not in the sum of every read's length (hot keys' long lists).
    committed = {t.id for t in txns if t.outcome == "ok"}
    longests: dict[Key, tuple[Value, ...]] = {}
    for key, seen_all in reads.items():
        longest: tuple[Value, ...] = max((s for _, s in seen_all), key=len, default=())
        longests[key] = longest
        walk = [longest]
        for tid, seen in seen_all:
            if not _is_prefix(seen, longest):
                walk.append(seen)
                inf.flag(
                    "incompatible-order",
                    f"T{tid} read {key!r} as {list(seen)}, not a prefix of {list(longest)}",
                    key=repr(key),
                )
        for seen in walk:
            for v in seen:
                w = writer.get((key, v))
                if w is not None and by_id[w].outcome == "info":
                    committed.add(w)
    for key in reads:
        longest = longests[key]
        order = list(longest)
        # A committed append no read observed still came after every observed one
        # (Elle's previously-appended-element): with one such append, its place is
        # known. An unknown txn counts as committed once any of its appends was seen.
        in_order = set(order)
        unseen = [
            v for v in appended.get(key, []) if v not in in_order and writer[(key, v)] in committed
        ]
        if len(unseen) == 1:
            order.append(unseen[0])
        inf.orders[key] = tuple(order)

    _g1(inf, txns, by_id, writer, final_append)
    _edges(inf, txns, by_id, writer, reads, process=process, realtime=realtime, check=check)
    return inf


def _later_appends(t: Txn, read: Read) -> list[Value]:
    after = False
    out: list[Value] = []
    for op in t.ops:
        if op is read:
            after = True
        elif after and isinstance(op, Append) and op.key == read.key:
            out.append(op.value)
    return out


def _g1(
    inf: Inference,
    txns: Sequence[Txn],
    by_id: dict[int, Txn],
    writer: dict[tuple[Key, Value], int],
    final_append: dict[tuple[int, Key], Value],
) -> None:
    """G1a (a read of an aborted append), G1b (a read ending on an intermediate append),
    and reads of values nobody appended.

    Per key, ``clean`` is how long a prefix of its version order holds no value either
    flag is about: a read that is a prefix of the order no longer than that has nothing
    to flag, and is passed over without a walk of its values.
    """
    clean: dict[Key, int] = {}
    for key, order in inf.orders.items():
        n = 0
        for v in order:
            w = writer.get((key, v))
            if w is None or by_id[w].outcome == "fail":
                break
            n += 1
        clean[key] = n
    for t in txns:
        if t.outcome != "ok":
            continue
        for op in t.ops:
            if not isinstance(op, Read) or not op.value:
                continue
            n = len(op.value)
            if n <= clean.get(op.key, 0) and inf.orders[op.key][:n] == tuple(op.value):
                pass  # a clean prefix of the order: nothing to flag in its values
            else:
                _flag_values(inf, t, op, by_id, writer)
            last = op.value[-1]
            w = writer.get((op.key, last))
            if w is not None and w != t.id and final_append.get((w, op.key)) != last:
                inf.flag(
                    "G1b",
                    f"T{t.id} read {op.key!r} ending in {last!r}, an intermediate append of"
                    f" T{w} (whose final append to {op.key!r} was"
                    f" {final_append[(w, op.key)]!r})",
                    reader=str(t),
                    writer=str(by_id[w]),
                )


def _flag_values(
    inf: Inference, t: Txn, op: Read, by_id: dict[int, Txn], writer: dict[tuple[Key, Value], int]
) -> None:
    """A read's values nobody appended (garbage-read) and those of failed txns (G1a)."""
    for v in op.value or ():
        w = writer.get((op.key, v))
        if w is None:
            inf.flag(
                "garbage-read",
                f"T{t.id} read {v!r} in {op.key!r}, which no transaction appended",
            )
        elif by_id[w].outcome == "fail":
            inf.flag(
                "G1a",
                f"T{t.id} read {v!r} in {op.key!r}, appended by T{w}, which failed",
                reader=str(t),
                writer=str(by_id[w]),
            )


def _edges(
    inf: Inference,
    txns: Sequence[Txn],
    by_id: dict[int, Txn],
    writer: dict[tuple[Key, Value], int],
    reads: dict[Key, list[tuple[int, tuple[Value, ...]]]],
    *,
    process: bool,
    realtime: bool,
    check: Callable[[], None],
) -> None:
    g = inf.graph
    observed: set[int] = set()
    for key, order in inf.orders.items():
        for v in order:
            if (key, v) in writer:
                observed.add(writer[(key, v)])
    # In the graph: committed txns, and unknown ones whose writes someone saw (they
    # committed). A failed txn is in none (its reads are G1a's business).
    members = {t.id for t in txns if t.outcome == "ok"} | {
        i for i in observed if by_id[i].outcome == "info"
    }
    for i in sorted(members):
        g.add_node(i)
    for key, order in inf.orders.items():
        check()
        # -1: a value nobody appended (a garbage read, flagged above): no edges from it.
        writers = [writer.get((key, v), -1) for v in order]
        for i in range(1, len(order)):
            a, b = writers[i - 1], writers[i]
            if a in members and b in members:
                g.add(a, b, WW, _why_ww(a, b, key, order[i - 1], order[i]))
        for reader, seen in reads.get(key, []):
            n = len(seen)
            if reader not in members:
                continue
            if n:
                a = writers[n - 1]
                if a in members:
                    g.add(a, reader, WR, _why_wr(a, reader, key, seen[-1]))
            if n < len(order):
                b = writers[n]
                if b in members:
                    g.add(reader, b, RW, _why_rw(reader, b, key, seen, order[n]))
    ok = [by_id[i] for i in sorted(members)]
    if process:
        last: dict[int, Txn] = {}
        for t in sorted(ok, key=lambda t: t.invoke_ns):
            p = last.get(t.process)
            if p is not None:
                g.add(p.id, t.id, PROCESS, _why_process(p, t))
            last[t.process] = t
    if realtime:
        _realtime(g, ok, check)


def _realtime(g: DepGraph, txns: Sequence[Txn], check: Callable[[], None]) -> None:
    """a -> b when a completed before b was invoked, transitively reduced (Elle's
    realtime graph): each txn links from the frontier of txns completed before it
    began that no other such txn follows, so the edges stay about linear."""
    events: list[tuple[int, int, Txn]] = []
    for t in txns:
        events.append((t.invoke_ns, 1, t))
        if t.outcome == "ok":  # an unknown txn's completion orders nothing
            events.append((t.complete_ns, 0, t))
    # At one instant invocations sort first: a completion at the very time of an
    # invocation does not precede it (equal times overlap).
    events.sort(key=lambda e: (e[0], -e[1]))
    frontier: dict[int, Txn] = {}
    preds: dict[int, list[Txn]] = {}
    for _, kind, t in events:
        check()
        if kind == 1:
            preds[t.id] = list(frontier.values())
            for p in preds[t.id]:
                g.add(p.id, t.id, REALTIME, _why_realtime(p, t))
        else:
            for p in preds.get(t.id, []):
                frontier.pop(p.id, None)
            frontier[t.id] = t


def _why_ww(a: int, b: int, key: Key, va: Value, vb: Value) -> Callable[[], str]:
    return lambda: (
        f"ww: T{a} appended {va!r} to {key!r} and T{b} appended the next version {vb!r}"
        " (version order from the longest read)"
    )


def _why_wr(a: int, b: int, key: Key, v: Value) -> Callable[[], str]:
    return lambda: f"wr: T{b} read {key!r} ending in {v!r}, which T{a} appended"


def _why_rw(a: int, b: int, key: Key, seen: tuple[Value, ...], nxt: Value) -> Callable[[], str]:
    # Rendered only for a witness: a hot key's read is thousands of values long.
    return lambda: (
        f"rw: T{a} read {key!r} {f'as {list(seen)}' if seen else 'as empty'},"
        f" and T{b} appended the next version {nxt!r} (T{a} did not see T{b}'s write)"
    )


def _why_process(a: Txn, b: Txn) -> Callable[[], str]:
    return lambda: f"process: T{a.id} and T{b.id} ran on process {a.process}, T{a.id} first"


def _why_realtime(a: Txn, b: Txn) -> Callable[[], str]:
    return lambda: (
        f"realtime: T{a.id} completed (t={a.complete_ns} ns) before T{b.id} was invoked"
        f" (t={b.invoke_ns} ns)"
    )
