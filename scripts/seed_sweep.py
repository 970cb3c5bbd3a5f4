"""Seed sweep: every scenario x layer x strategy for N seeds on one database; a tally table.

Usage: .venv/bin/python scripts/seed_sweep.py [-n 20] [--scenarios a,b] [--layers service,http]
       [--strategies row_lock,atomic] [--first-seed 1] [--budget-s 3600] [--database-url URL]

Seeds are first_seed .. first_seed + n - 1, so a failing cell is replayed by its seed.
Exits 1 when any run failed (or a check was unknown), 2 when the time budget ran out
before every run was done; the runs not done are listed as skipped, never as passes.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from coupon_core import available_strategies
from coupon_core.database import provision
from experiments import scenarios
from experiments.lab import LAYERS


@dataclass
class Cell:
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)


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
    cells: dict[tuple[str, str, str], Cell] = {}
    t0 = time.monotonic()
    deadline = t0 + args.budget_s
    database = provision(args.database_url)
    try:
        for name in args.scenarios:
            for layer in args.layers:
                for strategy in args.strategies:
                    cell = cells.setdefault((name, layer, strategy), Cell())
                    for seed in range(args.first_seed, args.first_seed + args.seeds):
                        if time.monotonic() >= deadline:
                            cell.skipped += 1
                            continue
                        started = time.monotonic()
                        try:
                            # Each run prints its seed line; the table below says it all.
                            with contextlib.redirect_stdout(io.StringIO()):
                                result = scenarios.run(
                                    name,
                                    seed=seed,
                                    layer=layer,
                                    strategy=strategy,
                                    database_url=database.url,
                                )
                        except Exception as err:  # a crash is a failure, with its reason
                            cell.failed += 1
                            cell.failures.append(
                                f"seed {seed}: crashed: {type(err).__name__}: {err}"
                            )
                        else:
                            if result.passed:
                                cell.passed += 1
                            else:
                                cell.failed += 1
                                why = ", ".join(f"{v.name}={v.label}" for v in result.failed)
                                cell.failures.append(f"seed {seed}: {why}")
                        cell.seconds += time.monotonic() - started
                    mark = "ok" if cell.failed == 0 else "FAIL"
                    print(
                        f"{name:<26} {layer:<8} {strategy:<13} {cell.passed:>3} pass "
                        f"{cell.failed:>3} fail {cell.skipped:>3} skipped {cell.seconds:7.1f}s {mark}",
                        flush=True,
                    )
    finally:
        database.close()
    return report(cells, time.monotonic() - t0)


def report(cells: dict[tuple[str, str, str], Cell], elapsed: float) -> int:
    print()
    print(
        f"{'scenario':<26} {'layer':<8} {'strategy':<13} {'pass':>5} {'fail':>5} {'skip':>5} {'s/run':>6}"
    )
    for (name, layer, strategy), c in cells.items():
        runs = c.passed + c.failed
        per = c.seconds / runs if runs else 0.0
        print(
            f"{name:<26} {layer:<8} {strategy:<13} {c.passed:>5} {c.failed:>5} {c.skipped:>5} {per:6.2f}"
        )
    failed = sum(c.failed for c in cells.values())
    skipped = sum(c.skipped for c in cells.values())
    passed = sum(c.passed for c in cells.values())
    print(f"\n{passed} passed, {failed} failed, {skipped} skipped in {elapsed:.1f}s")
    for (name, layer, strategy), c in cells.items():
        for line in c.failures:
            print(f"  FAIL {name} {layer} {strategy} {line}")
    if failed:
        return 1
    return 2 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
