"""``coupon-chaos mutants``: run the scenarios against every mutant and real strategy, print the matrix."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from experiments.cli_checks import (
    UsageError,
    check_choices,
    check_out_file,
    check_reachable,
    database_url,
)
from experiments.detection import Cell, detection_matrix, matrix_table, mutant_summary
from experiments.mutants import MUTANTS, mutant

NAME = "mutants"
HELP = "run each scenario against each mutant and real strategy: caught / missed / equivalent"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from experiments.scenarios import SCENARIOS

    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"scenarios to run (default: the catalog): {', '.join(SCENARIOS)}",
    )
    parser.add_argument(
        "--mutant",
        action="append",
        dest="mutants",
        metavar="NAME",
        help=f"only this mutant (repeatable; default: all of {', '.join(m.name for m in MUTANTS)})",
    )
    parser.add_argument("--seed", type=int, default=None, help="seed of every run (default: drawn)")
    parser.add_argument(
        "--database-url",
        default=None,
        help="use this PostgreSQL (default: $DATABASE_URL, else one embedded for the run)",
    )
    parser.add_argument(
        "--attempts",
        type=int,
        default=10,
        help="runs of a scenario before a mutant counts as missed (default: 10; a race"
        " needs a stampede that interleaves just so)",
    )
    parser.add_argument("--json", type=Path, default=None, help="also write the cells here")


def _print_cell(cell: Cell) -> None:
    why = f" by {', '.join(cell.by)}" if cell.by else ""
    print(f"  {cell.mutant:28} {cell.scenario:26} {cell.status}{why}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace) -> int:
    from experiments import scenarios as catalog

    check_choices(args.scenarios, list(catalog.SCENARIOS), "scenario")
    names = check_choices(args.mutants or [], [m.name for m in MUTANTS], "mutant")
    chosen = [mutant(n) for n in names] if names else list(MUTANTS)
    if args.attempts < 1:
        raise UsageError("--attempts must be at least 1")
    if args.json is not None:
        check_out_file(args.json, "--json")
    url = database_url(args.database_url)
    if url is not None:
        check_reachable(url)
    cells = detection_matrix(
        url,
        mutants=chosen,
        scenarios=args.scenarios or None,
        seed=args.seed,
        attempts=args.attempts,
        on_cell=_print_cell,
    )
    table = matrix_table(cells)
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    summary = mutant_summary(cells)
    print()
    for name, verdict in summary.items():
        print(f"{name:28} {verdict}")
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps([c.to_dict() for c in cells], indent=2))
    # Only a decided row is as expected: a caught or equivalent mutant, a passing real
    # strategy. A row left unknown, no_experiment or error tested nothing: non-zero.
    bad = [n for n, v in summary.items() if v not in ("caught", "equivalent", "pass")]
    if bad:
        print(f"not as expected: {', '.join(bad)}", file=sys.stderr)
    return 1 if bad else 0
