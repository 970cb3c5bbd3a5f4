"""``coupon-chaos bench``: claims per second per strategy and layer, against pgbench."""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Callable
from pathlib import Path

from coupon_core import EmbeddedPostgres, available_strategies
from coupon_core.database import DatabaseError
from experiments.bench import (
    LAYERS,
    BenchConfig,
    CellResult,
    format_table,
    run_bench,
    summarize,
    targets,
    write_outputs,
)
from experiments.cli_checks import (
    UsageError,
    check_out_dir,
    check_reachable,
    check_url,
    results_dir,
)
from experiments.errors import CommandError

NAME = "bench"
HELP = "benchmark the claim strategies (pgbench, service, HTTP) and write CSV and charts"


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 1,4,16: {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive numbers: {text!r}")
    return values


def _names(choices: tuple[str, ...] | list[str]) -> Callable[[str], tuple[str, ...]]:
    def parse(text: str) -> tuple[str, ...]:
        values = tuple(v for v in text.split(",") if v)
        bad = [v for v in values if v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"choose from {','.join(choices)}: {text!r}")
        return values

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--quick", action="store_true", help="16 workers only, 1 s per cell, one round"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="results folder (default results/bench-<id>)"
    )
    parser.add_argument(
        "--url", default=None, help="an existing database (default: a fresh embedded one)"
    )
    parser.add_argument(
        "--strategies",
        type=_names(available_strategies()),
        default=None,
        help=f"comma-separated, of {','.join(available_strategies())} (default: all)",
    )
    parser.add_argument(
        "--layers",
        type=_names(LAYERS),
        default=None,
        help=f"comma-separated, of {','.join(LAYERS)} (default: all)",
    )
    parser.add_argument(
        "--workers", type=_ints, default=None, help="comma-separated, e.g. 1,4,16,64"
    )
    parser.add_argument(
        "--coupons", type=_ints, default=None, help="coupons per workload, e.g. 1,64"
    )
    parser.add_argument("--seconds", type=int, default=None, help="per cell (whole seconds)")
    parser.add_argument("--rounds", type=int, default=None, help="interleaved repetitions")
    parser.add_argument(
        "--server-processes",
        type=_ints,
        default=None,
        metavar="N",
        help="uvicorn processes behind the HTTP layer (default: one per core)",
    )
    parser.add_argument("--seed", type=int, default=0, help="names the run's coupons")


def _config(args: argparse.Namespace) -> BenchConfig:
    chosen = {
        "strategies": args.strategies,
        "layers": args.layers,
        "workers": args.workers,
        "workloads": args.coupons,
        "duration_s": args.seconds,
        "rounds": args.rounds,
        "server_processes": args.server_processes[0] if args.server_processes else None,
    }
    overrides = {k: v for k, v in chosen.items() if v is not None}
    overrides["seed"] = args.seed
    return BenchConfig.quick(**overrides) if args.quick else BenchConfig(**overrides)


def _progress(cell: CellResult) -> None:
    print(
        f"  [{cell.order + 1}] round {cell.round} {cell.strategy:<12} {cell.workload:<11} "
        f"{cell.workers:>3} workers {cell.layer:<8} {cell.claims_per_s:>8.0f} claims/s",
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    for option, value in (("--seconds", args.seconds), ("--rounds", args.rounds)):
        if value is not None and value < 1:
            raise UsageError(f"{option} must be at least 1")
    if args.out is not None:
        check_out_dir(args.out, "--out")
    if args.url:
        check_reachable(check_url(args.url, "--url"))
    config = _config(args)
    with contextlib.ExitStack() as stack:
        url = args.url
        if not url:
            try:
                url = stack.enter_context(EmbeddedPostgres.create()).url
            except DatabaseError as err:
                raise CommandError(f"cannot start the database: {err}") from err
        started = time.monotonic()
        result = run_bench(url, config, progress=_progress)
    summary = summarize(result.frame())
    out = args.out or results_dir(None) / f"bench-{time.strftime('%Y%m%d-%H%M%S')}-{result.seed}"
    write_outputs(result, out)
    print(f"\nseed {result.seed}; {time.monotonic() - started:.0f} s; results in {out}")
    print(format_table(summary))
    print()
    found = targets(summary)
    for target in found:
        print(target.line())
    # Missed speed targets are findings, not failures; a broken invariant is a failure.
    return 0 if bool(summary["conserved"].all()) else 1
