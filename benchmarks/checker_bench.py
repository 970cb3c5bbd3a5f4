"""Timings of the linearizability checker on seeded simulated histories, valid and broken.

Each history comes from ``simulate_history``: a concurrent run against the sequential
model with random overlapping intervals, so it is linearizable; the "broken" rows flip
one refusal into a success past the stock, which the checker must reject.

    .venv/bin/python benchmarks/checker_bench.py [--seed 1] [--repeat 3]
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

from experiments.history import History
from experiments.linearizability import check_linearizable, simulate_history


@dataclass(frozen=True)
class Case:
    label: str
    budget_s: float  # the target the brief sets; printed beside the measurement
    params: dict[str, Any] = field(default_factory=dict)
    broken: bool = False


CASES = [
    Case("10 000 ops, 10 coupons, mixed", 10.0, {"coupons": 10, "ops": 10_000, "stock": 200}),
    Case(
        "10 000 ops, 10 coupons, 2% unknown",
        10.0,
        {"coupons": 10, "ops": 10_000, "stock": 200, "unknown": 0.02},
    ),
    Case(
        "1 000-op stampede, stock 1",
        2.0,
        {"ops": 1000, "stock": 1, "users": 5000, "gets": 0.0, "creates": 0.0, "stampede": True},
    ),
    Case(
        "1 000-op stampede, stock 100",
        2.0,
        {"ops": 1000, "stock": 100, "users": 5000, "gets": 0.0, "creates": 0.0, "stampede": True},
    ),
    Case(
        "1 000-op stampede, stock 100, reads, 2% unknown",
        2.0,
        {"ops": 1000, "stock": 100, "users": 500, "gets": 0.1, "unknown": 0.02, "stampede": True},
    ),
    Case(
        "1 000-op stampede, stock 100, one success too many",
        2.0,
        {"ops": 1000, "stock": 100, "users": 5000, "gets": 0.0, "creates": 0.0, "stampede": True},
        broken=True,
    ),
]


def _break(history: History) -> None:
    victim = next(o for o in history.ops if o.kind == "claim" and o.result == "no_stock")
    victim.result = "ok"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="seeds per case (seed, seed+1, ...)")
    args = parser.parse_args(argv)
    print(f"seeds {args.seed}..{args.seed + args.repeat - 1}; median of {args.repeat} histories")
    print(
        f"{'case':52} {'ops':>6} {'verdict':>8} {'median s':>9} {'max s':>7} {'states':>8} target"
    )
    worst = 0
    for case in CASES:
        times: list[float] = []
        states: list[int] = []
        labels: set[str] = set()
        ops = 0
        for k in range(args.repeat):
            history = simulate_history(args.seed + k, **case.params)
            if case.broken:
                _break(history)
            ops = len(history)
            started = time.perf_counter()
            verdict = check_linearizable(history, time_limit_s=60)
            times.append(time.perf_counter() - started)
            states.append(int(verdict.figures["states_explored"]))
            labels.add(verdict.label)
            expected = not case.broken
            if verdict.passed is not expected:
                worst = 1
        within = "ok" if max(times) <= case.budget_s else "OVER"
        print(
            f"{case.label:52} {ops:>6} {'/'.join(sorted(labels)):>8} "
            f"{statistics.median(times):>9.3f} {max(times):>7.3f} "
            f"{int(statistics.median(states)):>8} < {case.budget_s:g} s {within}"
        )
    if worst:
        print("a verdict was not the expected one")
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
