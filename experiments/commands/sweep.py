"""``coupon-chaos sweep``: scenarios x strategies x layers over N seeds; tidy tables and a report.

Everything is checked before any work (scenarios, strategies, ``-p`` parameters, seeds,
budget, ``--out``, the database URL and whether it answers): usage errors exit 2,
an unreachable database 1, and a refused sweep leaves no folder behind.

Writes ``<out>/sweeps/<run-id>/``: ``tables/`` (``runs.csv``, ``ops.csv``, ``checks.csv``,
``sweep.json``; see ``experiments.sweep_tables``), the sweep notebook executed on those
tables (``sweep.ipynb``) and its page (``sweep.html``, one self-contained file);
``<out>/sweeps/latest`` points at the newest. Exit 0 when every run of a real strategy
passed and the report's assertions held, 1 when one did not, 2 when the time budget ran
out before every run was done.
"""

from __future__ import annotations

import argparse
import contextlib
import html
import os
import secrets
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiments.cli_checks import (
    UsageError,
    check_choices,
    check_out_dir,
    check_reachable,
    database_url,
    results_dir,
)
from experiments.commands import add_results_option
from experiments.errors import CommandError
from experiments.sweep import REAL_STRATEGIES, mask

NAME = "sweep"
HELP = "run scenarios over many seeds, strategies and layers; chart the distributions"

_LAYERS = {"service": ("service",), "http": ("http",), "both": ("service", "http")}
_NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "sweep.ipynb"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("scenarios", nargs="+", metavar="SCENARIO", help="scenarios to sweep")
    parser.add_argument("--seeds", type=int, default=20, help="seeds per cell (default: 20)")
    parser.add_argument(
        "--first-seed",
        type=int,
        default=1,
        help="seeds are FIRST .. FIRST+N-1 (default: 1), so any cell replays by its seed",
    )
    parser.add_argument(
        "--strategy",
        action="append",
        dest="strategies",
        metavar="NAME",
        help=f"all ({', '.join(REAL_STRATEGIES)}: the default), mutants (every mutant),"
        " or a name;"
        " repeatable or comma-separated",
    )
    parser.add_argument(
        "--layer",
        choices=tuple(_LAYERS),
        default="service",
        help="call the service in-process, over HTTP, or both (default: service)",
    )
    parser.add_argument(
        "-p",
        dest="params",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a scenario parameter for every run (repeatable), e.g. -p users=200",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="use this PostgreSQL (default: $DATABASE_URL, else one embedded for the sweep)",
    )
    add_results_option(parser, "the sweep lands in DIR/sweeps/<run-id>/")
    parser.add_argument(
        "--budget-s",
        type=float,
        default=1800.0,
        help="start no run after this many seconds; the rest are reported skipped (default: 1800)",
    )
    parser.add_argument(
        "--no-report", action="store_true", help="write the tables only, not the notebook page"
    )


def parse_params(texts: list[str], names: list[str]) -> dict[str, Any]:
    """``["users=200"]`` -> ``{"users": 200}``, typed like the scenarios' defaults.

    ``experiments.params`` reads and types each value (as ``coupon-chaos run -p`` does);
    every chosen scenario must take the parameter (a sweep runs the same grid on each).
    Wrong names and values are a ``UsageError``.
    """
    from experiments.params import coerce, parse_assignments
    from experiments.scenarios import SCENARIOS

    own = {"seed": "--first-seed", "layer": "--layer", "strategy": "--strategy"}
    own |= {"database_url": "--database-url", "out_dir": "--results"}
    for text in texts:
        name = text.partition("=")[0].strip()
        if name in own:
            raise UsageError(f"-p {name}: set it with {own[name]}, not -p")
    given = parse_assignments(texts)
    out: dict[str, Any] = {}
    for name, text in given.items():
        without = [n for n in names if name not in SCENARIOS[n].defaults]
        if without:
            takes = ", ".join(sorted(SCENARIOS[without[0]].defaults)) or "none"
            raise UsageError(f"-p {name}: not a parameter of {without[0]} (it takes: {takes})")
        out[name] = coerce(name, text, repr(SCENARIOS[names[0]].defaults[name]))
    return out


def _strategies(given: list[str] | None) -> list[str]:
    return [s.strip() for g in (given or ["all"]) for s in g.split(",") if s.strip()]


def _progress(row: dict[str, Any], done: int, total: int) -> None:
    took = row.get("duration_s")
    why = f": {row['error']}" if row.get("error") else ""
    failed = f" ({row['failed_checks']})" if row.get("failed_checks") else ""
    print(
        f"[{done}/{total}] {row['scenario']} {row['strategy']} {row['layer']} seed {row['seed']}:"
        f" {row['status']}{failed}{'' if took is None else f' in {took:.2f} s'}{why}",
        file=sys.stderr,
        flush=True,
    )


def run(args: argparse.Namespace) -> int:
    from experiments import sweep_report, sweep_tables
    from experiments.scenarios import SCENARIOS
    from experiments.sweep import check_params, expand_strategies, run_sweep

    # Everything checked before any work: a refused sweep starts nothing, writes nothing.
    check_choices(args.scenarios, list(SCENARIOS), "scenario")
    if args.seeds < 1:
        raise UsageError("--seeds must be at least 1")
    if args.budget_s <= 0:
        raise UsageError("--budget-s must be positive")
    strategies = _strategies(args.strategies)
    params = parse_params(args.params, args.scenarios)
    try:
        check_params(args.scenarios, params)
        expand_strategies(strategies)
    except ValueError as err:
        raise UsageError(str(err)) from None
    out = check_out_dir(results_dir(args.results))
    url = database_url(args.database_url)
    if url is not None:
        check_reachable(url)
    started = datetime.now(UTC)
    run_id = f"{started:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
    root = out.resolve() / "sweeps"
    run_dir = root / run_id
    t0 = time.monotonic()
    from coupon_core.database import DatabaseError

    try:
        sweep = run_sweep(
            args.scenarios,
            seeds=args.seeds,
            first_seed=args.first_seed,
            strategies=strategies,
            layers=_LAYERS[args.layer],
            params=params,
            database_url=url,
            budget_s=args.budget_s,
            progress=_progress,
        )
    except DatabaseError as err:  # no database to sweep on: one line, nothing written
        raise CommandError(mask(str(err))) from None
    run_dir.mkdir(parents=True)
    sweep.meta["command"] = _command(args)
    sweep.meta["run_id"] = run_id
    tables = sweep_tables.save(sweep, run_dir / "tables")
    report_errors: list[str] = []
    page = None
    if not args.no_report:
        page, report_errors = _report(tables, run_dir, sweep)
    _point_latest(root, run_id)
    elapsed = time.monotonic() - t0

    print(sweep_report.cell_table(sweep).to_string(index=False))
    statuses = {str(k): int(n) for k, n in sweep.runs["status"].value_counts().items()}
    # Green only when every real strategy passed and every run decided something: a run
    # that tested nothing (no_experiment), could not decide (unknown) or crashed is
    # never green, a mutant's included (a mutant's FAIL is its catch, not a failure).
    runs = sweep.runs
    bad_real = runs[
        ((runs["kind"] == "strategy") & (runs["status"] != "pass") & (runs["status"] != "skipped"))
        | runs["status"].isin(["unknown", "no_experiment", "error"])
    ]
    print(
        f"sweep {run_id}: {len(sweep.runs)} runs, {sweep_report.runs_time(sweep.meta)}"
        f" ({elapsed:.1f} s with the tables and the report) "
        f"({', '.join(f'{n} {k}' for k, n in sorted(statuses.items()))}); tables: {tables}"
        + (f"; report: {page}" if page else "")
    )
    for r in bad_real.to_dict("records"):
        why = r["error"] if r["status"] == "error" else r["failed_checks"]
        print(
            f"FAILED {r['scenario']} {r['strategy']} {r['layer']} seed {r['seed']}:"
            f" {r['status']}: {why}"
        )
    for e in report_errors:
        print(f"FAILED report: {e}")
    if not bad_real.empty or report_errors:
        return 1
    return 2 if statuses.get("skipped") else 0


def _command(args: argparse.Namespace) -> str:
    words = ["coupon-chaos", "sweep", *args.scenarios, "--seeds", str(args.seeds)]
    if args.first_seed != 1:
        words += ["--first-seed", str(args.first_seed)]
    for s in _strategies(args.strategies):
        words += ["--strategy", s]
    words += ["--layer", args.layer]
    for p in args.params:
        words += ["-p", p]
    return shlex.join(words)  # no database URL: it may carry a password


def _report(tables: Path, run_dir: Path, sweep: Any) -> tuple[Path, list[str]]:
    """Execute the sweep notebook on ``tables``; render it; the error of each failed cell."""
    import nbformat
    import papermill

    from experiments import sweep_report
    from experiments.suite_html import render_html

    executed = run_dir / "sweep.ipynb"
    with contextlib.suppress(papermill.PapermillExecutionError):
        papermill.execute_notebook(
            str(_NOTEBOOK),
            str(executed),
            parameters={"tables_dir": str(tables)},
            kernel_name="python3",
            progress_bar=False,
            resources={"metadata": {"path": str(_NOTEBOOK.parent)}},
            start_timeout=60,
            execution_timeout=900,
            shutdown_kernel="immediate",
            allow_errors=True,
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    nb = nbformat.read(executed, as_version=4)  # type: ignore[no-untyped-call]
    errors = [
        f"{o.get('ename')}: {o.get('evalue')}"
        for cell in nb.cells
        if cell.cell_type == "code"
        for o in cell.get("outputs", [])
        if o.get("output_type") == "error"
    ]
    meta = sweep.meta
    verdict = "pass" if not errors else "FAIL"
    banner = (
        f'<div class="cc-banner cc-{"pass" if not errors else "fail"}">'
        f'<p><span class="cc-verdict">{verdict}</span> sweep {html.escape(meta["run_id"])}: '
        f"{len(sweep.runs)} runs, {html.escape(', '.join(meta['scenarios']))}; "
        f"seeds {meta['first_seed']}..{meta['first_seed'] + meta['seeds'] - 1}; "
        f"{sweep_report.runs_time(meta)} (this page's own rendering is not in it)</p>"
        f"<p>rerun: <code>{html.escape(meta['command'])}</code></p>"
        + "".join(f"<p>{html.escape(e)}</p>" for e in errors)
        + "</div>"
    )
    page = render_html(nb, run_dir / "sweep.html", title=f"{verdict}: sweep", banner=banner)
    return page, errors


def _point_latest(root: Path, run_id: str) -> None:
    tmp = root / f".latest-{os.getpid()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_id, target_is_directory=True)
    os.replace(tmp, root / "latest")
