"""Fault sweep: every fault scenario on each layer it supports for N seeds; tally and figures.

Usage: .venv/bin/python scripts/fault_sweep.py [-n 10] [--scenarios a,b] [--layers service,http]
       [--strategy row_lock] [--first-seed 1] [--budget-s 2400] [--database-url URL]

All runs share one database, except database_restart, which starts (and restarts) its
own. Prints a tally per scenario x layer, then per scenario the figures measured:
time to recover (min/median/max), operations affected, 503 answers and any other
5xx (which must be 0), and for input_boundary the hostile and generated requests
sent. Exits 1 when any run failed (or a check was unknown), 2 when the time budget
ran out first; runs not done are counted as skipped, never as passes.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from coupon_core.database import provision
from experiments import scenarios
from experiments.lab import LAYERS
from experiments.result import Result
from experiments.sweep import Tally, print_totals

#: Scenarios that bring their own database (a restart must not stop the shared one).
OWN_DATABASE = frozenset({"database_restart"})


@dataclass
class Cell(Tally):
    """A tally with the fault figures of its runs."""

    recover_s: list[float] = field(default_factory=list)
    first_ok_s: list[float] = field(default_factory=list)
    affected: list[int] = field(default_factory=list)
    unavailable_503: int = 0
    other_5xx: int = 0
    catalog: int = 0
    generated: int = 0


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--seeds", type=int, default=10, help="seeds per cell (default 10)")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--scenarios", type=_csv, default=list(scenarios.FAULTS))
    p.add_argument("--layers", type=_csv, default=list(LAYERS))
    p.add_argument("--strategy", default="row_lock")
    p.add_argument("--budget-s", type=float, default=2400.0, help="stop starting runs after this")
    p.add_argument("--database-url", default=None, help="default: DATABASE_URL, else embedded")
    args = p.parse_args(argv)
    unknown = set(args.scenarios) - set(scenarios.SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {sorted(unknown)}")
    if set(args.layers) - set(LAYERS):
        p.error(f"layers are {', '.join(LAYERS)}")
    return args


def record(cell: Cell, result: Result) -> None:
    """Add one run's figures to its cell (only figures the run measured)."""
    s = result.summary
    if s.get("time_to_recover_s") is not None:
        cell.recover_s.append(float(s["time_to_recover_s"]))
    first = s.get("service_recovery_s", s.get("first_ok_after_fault_s"))
    if first is not None:
        cell.first_ok_s.append(float(first))
    if "ops_affected" in s:
        cell.affected.append(int(s["ops_affected"]))
    for op in result.history.ops:
        status = op.http_status or 0
        if status == 503:
            cell.unavailable_503 += 1
        elif status >= 500 or op.result == "server_error":
            cell.other_5xx += 1
    cell.catalog += int(s.get("catalog", 0))
    cell.generated += int(s.get("generated", 0))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    cells: dict[tuple[str, str], Cell] = {}
    t0 = time.monotonic()
    deadline = t0 + args.budget_s
    # The scenarios quiet the pool during their faults; between runs, too.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    database = provision(args.database_url)
    try:
        for name in args.scenarios:
            for layer in [la for la in args.layers if la in scenarios.SCENARIOS[name].layers]:
                cell = cells.setdefault((name, layer), Cell())
                for seed in range(args.first_seed, args.first_seed + args.seeds):
                    result = cell.run(
                        name,
                        seed,
                        deadline=deadline,
                        layer=layer,
                        strategy=args.strategy,
                        database_url=None if name in OWN_DATABASE else database.url,
                    )
                    if result is not None:
                        record(cell, result)
                print(f"{name:<20} {layer:<8} {cell.line()}", flush=True)
    finally:
        database.close()
    return report(cells, time.monotonic() - t0)


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.3f}/{statistics.median(values):.3f}/{max(values):.3f}"


def report(cells: dict[tuple[str, str], Cell], elapsed: float) -> int:
    print(
        f"\n{'scenario':<20} {'layer':<8} {'pass':>4} {'fail':>4} {'skip':>4} {'s/run':>6}"
        f"  {'recover s min/med/max':<23} {'first ok s min/med/max':<23}"
        f" {'affected':>8} {'503':>6} {'5xx':>4}"
    )
    for (name, layer), c in cells.items():
        per = c.seconds_per_run
        affected = str(sum(c.affected)) if c.affected else "-"
        print(
            f"{name:<20} {layer:<8} {c.passed:>4} {c.failed:>4} {c.skipped:>4} {per:6.2f}"
            f"  {_spread(c.recover_s):<23} {_spread(c.first_ok_s):<23}"
            f" {affected:>8} {c.unavailable_503:>6} {c.other_5xx:>4}"
        )
    for (name, layer), c in cells.items():
        if c.catalog or c.generated:
            print(
                f"{name} {layer}: {c.catalog} hostile catalog requests, "
                f"{c.generated} generated, {c.other_5xx} 5xx"
            )
    return print_totals(cells, elapsed)


if __name__ == "__main__":
    sys.exit(main())
