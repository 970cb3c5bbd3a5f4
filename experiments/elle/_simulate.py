"""Seeded list-append histories for tests and benchmarks: random ones, and serial runs."""

from __future__ import annotations

import random
from dataclasses import replace

from experiments.elle._history import Append, Key, MicroOp, Read, Txn, Value

__all__ = ["random_history", "serial_history", "stale_read"]


def random_history(
    seed: int, *, txns: int = 5, keys: int = 2, ops: int = 3, determined: bool = True
) -> list[Txn]:
    """Txns whose reads are random prefixes of each key's (random) version order.

    At most one append per key and txn, reads consistent with the txn's own appends,
    so the only question left is the order between txns: serializable or not, by
    chance. ``determined``: a last txn reads every key whole, so each key's version
    order is fully known (then a cycle exists exactly when no serial order does).
    Intervals are random too (for realtime checks).
    """
    rng = random.Random(seed)
    plans: list[list[tuple[str, Key]]] = []
    for _ in range(txns):
        plan: list[tuple[str, Key]] = []
        appended: set[Key] = set()
        for _ in range(rng.randint(1, ops)):
            key: Key = f"k{rng.randrange(keys)}"
            if rng.random() < 0.5 and key not in appended:
                appended.add(key)
                plan.append(("a", key))
            else:
                plan.append(("r", key))
        plans.append(plan)
    # Each key's version order: its appends in a random order; values are 1, 2, ...
    writers: dict[Key, list[int]] = {}
    for i, plan in enumerate(plans):
        for kind, key in plan:
            if kind == "a":
                writers.setdefault(key, []).append(i)
    order: dict[Key, list[int]] = {}
    position: dict[tuple[int, Key], int] = {}
    for key, ws in writers.items():
        rng.shuffle(ws)
        order[key] = ws
        for p, w in enumerate(ws):
            position[(w, key)] = p
    out: list[Txn] = []
    for i, plan in enumerate(plans):
        done: set[Key] = set()
        mops: list[MicroOp] = []
        for kind, key in plan:
            n = len(order.get(key, []))
            if kind == "a":
                done.add(key)
                mops.append(Append(key, position[(i, key)] + 1))
                continue
            if key in done:  # sees everything up to and including its own append
                length = position[(i, key)] + 1
            elif (i, key) in position:  # its own append comes later: must not see it
                length = rng.randint(0, position[(i, key)])
            else:
                length = rng.randint(0, n)
            mops.append(Read(key, tuple(range(1, length + 1))))
        start = rng.randrange(0, 100)
        out.append(Txn(i, tuple(mops), "ok", i % 3, start, start + rng.randrange(1, 40)))
    if determined and order:
        full = tuple(Read(k, tuple(range(1, len(ws) + 1))) for k, ws in sorted(order.items()))
        out.append(Txn(txns, full, "ok", 99, 1000, 1001))
    return out


def serial_history(
    seed: int, *, txns: int, keys: int, ops: int = 4, concurrency: int = 8
) -> list[Txn]:
    """A strictly serializable history: txns run one after another in commit order, each
    on one of ``concurrency`` processes with overlapping intervals around its commit."""
    rng = random.Random(seed)
    state: dict[Key, list[Value]] = {}
    counter = 0
    out: list[Txn] = []
    free_at = [0] * concurrency
    last_commit = 0
    for i in range(txns):
        mops: list[MicroOp] = []
        for _ in range(rng.randint(1, ops)):
            key: Key = f"k{rng.randrange(keys)}"
            if rng.random() < 0.5:
                counter += 1
                state.setdefault(key, []).append(counter)
                mops.append(Append(key, counter))
            else:
                mops.append(Read(key, tuple(state.get(key, ()))))
        # The commit point lies inside the interval, and a process runs one txn at a
        # time: so process order, real-time order and commit order agree.
        p = rng.randrange(concurrency)
        commit = max(last_commit + rng.randrange(1, 12), free_at[p] + 1)
        last_commit = commit
        invoke = max(free_at[p], commit - rng.randrange(1, 60))
        complete = commit + rng.randrange(1, 60)
        free_at[p] = complete + 1
        out.append(Txn(i, tuple(mops), "ok", p, invoke, complete))
    return out


def stale_read(history: list[Txn], seed: int) -> tuple[list[Txn], int] | None:
    """The history with one txn that read a key and appended to it later made to read it
    as empty: a cycle through an rw edge (from it to the key's first writer, then
    ww edges forward to it), so never serializable. Returns the history and the changed txn's id, or None if no txn
    fits."""
    rng = random.Random(seed)
    candidates = []
    for t in history:
        for j, op in enumerate(t.ops):
            if (
                isinstance(op, Read)
                and op.value
                and any(isinstance(o, Append) and o.key == op.key for o in t.ops[j + 1 :])
            ):
                candidates.append((t, j))
    if not candidates:
        return None
    t, j = rng.choice(candidates)
    ops = list(t.ops)
    ops[j] = Read(ops[j].key, ())
    changed = replace(t, ops=tuple(ops))
    return [changed if x.id == t.id else x for x in history], t.id
