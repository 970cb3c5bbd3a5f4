"""Seed sweep: every scenario x layer x strategy for N seeds on one database; a tally table.

Usage: .venv/bin/python scripts/seed_sweep.py [-n 20] [--scenarios a,b] [--layers service,http]
       [--strategies row_lock,atomic] [--first-seed 1] [--budget-s 3600] [--database-url URL]

Seeds are first_seed .. first_seed + n - 1, so a failing cell is replayed by its seed.
Exits 1 when any run failed (or a check was unknown), 2 when the time budget ran out
before every run was done; the runs not done are listed as skipped, never as passes.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from coupon_core import available_strategies
from coupon_core.database import provision
from experiments import scenarios
from experiments.lab import LAYERS
from experiments.sweep import Tally, print_totals


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--seeds", type=int, default=20, help="seeds per cell (default 20)")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--scenarios", type=_csv, default=list(scenarios.CATALOG))
    p.add_argument("--layers", type=_csv, default=list(LAYERS))
    p.add_argument("--strategies", type=_csv, default=available_strategies())
    p.add_argument("--budget-s", type=float, default=3600.0, help="stop starting runs after this")
    p.add_argument("--database-url", default=None, help="default: DATABASE_URL, else embedded")
    args = p.parse_args(argv)
    unknown = set(args.scenarios) - set(scenarios.SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {sorted(unknown)}")
    if set(args.layers) - set(LAYERS):
        p.error(f"layers are {', '.join(LAYERS)}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    cells: dict[tuple[str, str, str], Tally] = {}
    t0 = time.monotonic()
    deadline = t0 + args.budget_s
    database = provision(args.database_url)
    try:
        for name in args.scenarios:
            for layer in args.layers:
                for strategy in args.strategies:
                    cell = cells.setdefault((name, layer, strategy), Tally())
                    for seed in range(args.first_seed, args.first_seed + args.seeds):
                        cell.run(
                            name,
                            seed,
                            deadline=deadline,
                            layer=layer,
                            strategy=strategy,
                            database_url=database.url,
                        )
                    print(f"{name:<26} {layer:<8} {strategy:<13} {cell.line()}", flush=True)
    finally:
        database.close()
    return report(cells, time.monotonic() - t0)


def report(cells: dict[tuple[str, str, str], Tally], elapsed: float) -> int:
    print()
    print(
        f"{'scenario':<26} {'layer':<8} {'strategy':<13} {'pass':>5} {'fail':>5} {'skip':>5} {'s/run':>6}"
    )
    for (name, layer, strategy), c in cells.items():
        print(
            f"{name:<26} {layer:<8} {strategy:<13} {c.passed:>5} {c.failed:>5} {c.skipped:>5}"
            f" {c.seconds_per_run:6.2f}"
        )
    return print_totals(cells, elapsed)


if __name__ == "__main__":
    sys.exit(main())
