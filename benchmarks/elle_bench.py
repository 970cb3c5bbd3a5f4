"""Timings of the Elle-style checker on seeded list-append histories, valid and broken.

Each valid history comes from ``serial_history``: txns that ran one after another in
commit order, on overlapping intervals, so it is strictly serializable; the "broken"
rows make one txn that read a key and appended to it later read it as empty
(``stale_read``), a cycle through an rw edge the checker must report.

Per case: ops (micro-ops: appends and reads), txns, the summed length of every read
(what list-append inference must look at), edges, the verdict, wall seconds (median and
max over the seeds, with tracing off; cpu s is the median CPU time, what a shared
machine's load does not inflate), and the peak of Python allocations during one
more check under ``tracemalloc`` (timed apart: tracing slows the check several-fold).
MET/MISSED compares the slowest seed with the goal. It is a script, not one of
``coupon-chaos bench``'s cells (that harness measures claims per second).

    .venv/bin/python benchmarks/elle_bench.py [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
from dataclasses import dataclass, field
from typing import Any

from experiments.elle import Model, Read, Txn, check_history, serial_history, stale_read


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


def _history(case: Case, seed: int) -> list[Txn]:
    history = serial_history(seed, **case.params)
    if case.broken:
        broken = stale_read(history, seed)
        assert broken is not None, "no txn fits a stale read"
        history = broken[0]
    return history


def _peak_mib(case: Case, history: list[Txn]) -> float:
    tracemalloc.start()
    try:
        check_history(history, model=case.model, process=case.process, time_limit_s=600)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="seeds per case (seed, seed+1, ...)")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    print(f"seeds {args.seed}..{args.seed + args.repeat - 1}; median of {args.repeat} histories")
    print(
        f"{'case':44} {'ops':>6} {'txns':>6} {'read len':>9} {'edges':>6} {'verdict':>7}"
        f" {'median s':>8} {'max s':>6} {'cpu s':>6} {'peak MiB':>8}  goal"
    )
    worst = 0
    for case in CASES:
        times: list[float] = []
        cpu: list[float] = []
        labels: set[str] = set()
        ops = txns = read_len = edges = 0
        history: list[Txn] = []
        for k in range(args.repeat):
            history = _history(case, args.seed + k)
            ops = sum(len(t.ops) for t in history)
            txns = len(history)
            read_len = sum(
                len(op.value or ()) for t in history for op in t.ops if isinstance(op, Read)
            )
            started, cpu0 = time.perf_counter(), time.process_time()
            verdict = check_history(
                history, model=case.model, process=case.process, time_limit_s=120
            )
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - cpu0)
            edges = int(verdict.figures.get("edges", 0))
            labels.add(verdict.label)
            if verdict.passed is not (not case.broken):
                worst = 1
        peak = _peak_mib(case, history)
        met = "MET" if max(times) <= case.budget_s else "MISSED"
        print(
            f"{case.label:44} {ops:>6} {txns:>6} {read_len:>9} {edges:>6}"
            f" {'/'.join(sorted(labels)):>7} {statistics.median(times):>8.3f}"
            f" {max(times):>6.3f} {statistics.median(cpu):>6.3f} {peak:>8.1f}"
            f"  < {case.budget_s:g} s {met}"
        )
        if met == "MISSED":
            worst = 1
    if worst:
        print("a verdict was not the expected one, or a goal was missed")
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
