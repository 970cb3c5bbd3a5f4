"""Seed sweep: every scenario x layer x strategy for N seeds, through ``coupon-chaos sweep``.

Usage: .venv/bin/python scripts/seed_sweep.py [-n 20] [--scenarios a,b] [--layers service,http]
       [--strategies row_lock,atomic] [--first-seed 1] [--budget-s 3600] [--database-url URL]

A thin caller kept for its defaults (the whole catalog, both layers, the four
strategies): the sweep itself, its tables (results/sweeps/<run-id>/tables/) and its
report page are ``coupon-chaos sweep``'s. Seeds are first_seed .. first_seed + n - 1,
so a failing cell is replayed by its seed. Exits 1 when any run failed (or a check
was unknown), 2 when the time budget ran out before every run was done; the runs not
done are listed as skipped, never as passes.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from experiments import cli, scenarios
from experiments.lab import LAYERS
from experiments.sweep import REAL_STRATEGIES


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--seeds", type=int, default=20, help="seeds per cell (default 20)")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--scenarios", type=_csv, default=list(scenarios.CATALOG))
    p.add_argument("--layers", type=_csv, default=list(LAYERS))
    p.add_argument("--strategies", type=_csv, default=list(REAL_STRATEGIES))
    p.add_argument("--budget-s", type=float, default=3600.0, help="stop starting runs after this")
    p.add_argument("--database-url", default=None, help="default: DATABASE_URL, else embedded")
    args = p.parse_args(argv)
    if not args.layers or set(args.layers) - set(LAYERS):
        p.error(f"layers are {', '.join(LAYERS)}")
    return args


def command(args: argparse.Namespace) -> list[str]:
    """The ``coupon-chaos sweep`` arguments that run this sweep."""
    layer = "both" if set(args.layers) == set(LAYERS) else args.layers[0]
    words = ["sweep", *args.scenarios, "--seeds", str(args.seeds)]
    words += ["--first-seed", str(args.first_seed), "--budget-s", str(args.budget_s)]
    words += ["--layer", layer, *(w for s in args.strategies for w in ("--strategy", s))]
    if args.database_url:
        words += ["--database-url", args.database_url]
    return words


def main(argv: Sequence[str] | None = None) -> int:
    return cli.main(command(parse(argv)))


if __name__ == "__main__":
    sys.exit(main())
