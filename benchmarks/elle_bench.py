"""Timings of the Elle-style checker on seeded list-append histories, valid and broken.

Each valid history comes from ``serial_history``: txns that ran one after another in
commit order, on overlapping intervals, so it is strictly serializable; the "broken"
rows make one txn that read a key and appended to it later read it as empty
(``stale_read``), a cycle through an rw edge the checker must report.

    .venv/bin/python benchmarks/elle_bench.py [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from experiments.elle import Model, check_history, serial_history, stale_read


@dataclass(frozen=True)
class Case:
    label: str
    budget_s: float  # the goal: histories of 10,000 ops checked in seconds
    params: dict[str, Any] = field(default_factory=dict)
    model: Model = "serializable"
    process: bool = False
    broken: bool = False


CASES = [
    Case("10 000 ops, 50 keys, serializable", 5.0, {"txns": 4000, "keys": 50}),
    Case(
        "10 000 ops, 50 keys, strict + process order",
        5.0,
        {"txns": 4000, "keys": 50},
        model="strict-serializable",
        process=True,
    ),
    Case("10 000 ops, 5 hot keys (long lists)", 5.0, {"txns": 4000, "keys": 5}),
    Case("10 000 ops, 50 keys, one stale read", 5.0, {"txns": 4000, "keys": 50}, broken=True),
    Case("40 000 ops, 200 keys, serializable", 20.0, {"txns": 16000, "keys": 200}),
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="seeds per case (seed, seed+1, ...)")
    args = parser.parse_args(argv)
    print(f"seeds {args.seed}..{args.seed + args.repeat - 1}; median of {args.repeat} histories")
    print(f"{'case':46} {'ops':>6} {'edges':>7} {'verdict':>8} {'median s':>9} {'max s':>7} goal")
    worst = 0
    for case in CASES:
        times: list[float] = []
        labels: set[str] = set()
        ops = edges = 0
        for k in range(args.repeat):
            history = serial_history(args.seed + k, **case.params)
            if case.broken:
                broken = stale_read(history, args.seed + k)
                assert broken is not None, "no txn fits a stale read"
                history = broken[0]
            ops = sum(len(t.ops) for t in history)
            started = time.perf_counter()
            verdict = check_history(
                history, model=case.model, process=case.process, time_limit_s=120
            )
            times.append(time.perf_counter() - started)
            edges = int(verdict.figures.get("edges", 0))
            labels.add(verdict.label)
            if verdict.passed is not (not case.broken):
                worst = 1
        met = "MET" if max(times) <= case.budget_s else "MISSED"
        print(
            f"{case.label:46} {ops:>6} {edges:>7} {'/'.join(sorted(labels)):>8} "
            f"{statistics.median(times):>9.3f} {max(times):>7.3f} < {case.budget_s:g} s {met}"
        )
        if met == "MISSED":
            worst = 1
    if worst:
        print("a verdict was not the expected one, or a goal was missed")
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
