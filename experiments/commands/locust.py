"""``coupon-chaos locust``: a scenario's plan driven by a Locust master and worker processes.

A Locust run is a run like any other: everything is checked before any work (the
scenario, ``-p`` against its types and declared ranges, the strategy, the results
folder, the database URL and whether it answers); the run lands in
``<results>/<run-id>/`` (the results folder chosen as every command chooses it:
``--results``, else ``$COUPON_CHAOS_RESULTS``, else the project's ``results/``) with its
Result and history under ``data/<scenario>-http/``, Locust's own report and statistics
beside them, Locust's logs under ``locust/``, a page, ``summary.json``, ``index.html``
and ``latest`` (``experiments.suite.record.record_result``), so ``runs``, ``open`` and
``compare`` read it as any run. Locust drives HTTP: the layer is ``http``, the driver
(``locust``) and the worker processes are among the Result's params.
"""

from __future__ import annotations

import argparse
import shlex
import time
from datetime import UTC, datetime
from typing import Any

from experiments.cli_checks import (
    check_choices,
    check_out_dir,
    check_reachable,
    database_url,
    results_dir,
)
from experiments.commands import add_results_option
from experiments.errors import CommandError, SpecError, UsageError

NAME = "locust"
HELP = "drive a scenario's seeded plan from Locust master and worker processes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenario",
        nargs="?",
        metavar="SCENARIO",
        help="the scenario whose plan to run (not with --master-host: the master decides)",
    )
    parser.add_argument(
        "--processes",
        type=int,
        default=2,
        help="Locust worker processes to start on this machine (default: 2)",
    )
    where = parser.add_mutually_exclusive_group()
    where.add_argument(
        "--master-bind",
        metavar="HOST:PORT",
        default=None,
        help="where the master listens for workers (default: 127.0.0.1 and a free port)",
    )
    where.add_argument(
        "--master-host",
        metavar="HOST:PORT",
        default=None,
        help="join the master there as --processes workers, instead of running one",
    )
    parser.add_argument(
        "--expect-workers",
        type=int,
        default=None,
        help="workers the master waits for, local and joining (default: --processes)",
    )
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        dest="parameters",
        metavar="NAME=VALUE",
        help="set a scenario figure, typed like its default (repeatable), e.g. -p users=200 "
        "-p stock=5; and max_clock_uncertainty_ms, the clock bound of the linearizability "
        "check (default: 25.0)",
    )
    parser.add_argument("--seed", type=int, default=None, help="plan seed (default: drawn)")
    parser.add_argument(
        "--strategy", default=None, metavar="STRATEGY", help="claim strategy (default: row_lock)"
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="use this PostgreSQL (default: $DATABASE_URL, else one embedded for the run)",
    )
    parser.add_argument(
        "--target",
        metavar="URL",
        default=None,
        help="drive a server already running at URL instead of the lab's (its database "
        "must be --database-url or $DATABASE_URL, for the final-state checks)",
    )
    parser.add_argument("--op-timeout", type=float, default=10.0, help="seconds per operation")
    parser.add_argument("--run-timeout", type=float, default=60.0, help="seconds for the run")
    add_results_option(
        parser,
        "the run lands in DIR/<run-id>/ and DIR/latest points at it; with --master-host "
        "the workers' logs go to DIR/locust-workers/",
    )
    parser.add_argument(
        "--join-timeout",
        type=float,
        default=3600.0,
        help="with --master-host: stop the workers after this many seconds (default: 3600)",
    )
    parser.add_argument("--open", action="store_true", help="open the report in a browser")


def _join(args: argparse.Namespace) -> int:
    from experiments.locust import SwarmError, join_swarm, parse_hostport
    from experiments.run_record import new_run_id

    if args.scenario:
        raise UsageError("with --master-host the master decides the scenario: give none")
    parse_hostport(args.master_host)
    out = check_out_dir(results_dir(args.results))
    log_dir = out / "locust-workers" / new_run_id(datetime.now(UTC))
    try:
        codes = join_swarm(
            args.master_host,
            processes=args.processes,
            log_dir=log_dir,
            timeout_s=args.join_timeout,
        )
    except (ValueError, SwarmError) as err:
        raise CommandError(str(err)) from None
    print(f"workers ended: {codes}; logs: {log_dir}")
    return 0 if all(code == 0 for code in codes.values()) else 1


def _strategy(args: argparse.Namespace, given: dict[str, str]) -> str:
    """``--strategy`` or ``-p strategy=`` (not both, differing), one of the strategies."""
    from experiments.commands.run import strategy_choices

    strategy = args.strategy or "row_lock"
    if "strategy" in given:
        text = given.pop("strategy")
        strategy = text.strip("'\"")
        if args.strategy is not None and args.strategy != strategy:
            raise UsageError(
                f"-p strategy={text} conflicts with --strategy {args.strategy}: give one"
            )
    check_choices([strategy], strategy_choices(), "strategy")
    return strategy


def _parameters(scenario: str, given: dict[str, str]) -> dict[str, Any]:
    """The ``-p`` values typed like their defaults and within their declared ranges: the
    scenario's figures (its catalog module's ranges) and the Locust run's own."""
    from experiments.locust import LOCUST_DEFAULTS, LOCUST_RANGES, driven
    from experiments.params import coerce
    from experiments.scenarios import SCENARIOS

    declared = {**driven(scenario).defaults, **LOCUST_DEFAULTS}
    for name in given:
        if name not in declared:
            raise UsageError(
                f"-p {name}: no parameter {name!r} in {scenario} driven by Locust; "
                f"allowed: {', '.join(declared)}"
            )
    typed = {name: coerce(name, text, repr(declared[name])) for name, text in given.items()}
    ranges = {**(SCENARIOS[scenario].ranges if scenario in SCENARIOS else {}), **LOCUST_RANGES}
    for name, value in typed.items():
        if name in ranges:
            try:
                ranges[name].check(name, value)
            except SpecError as err:
                raise UsageError(f"-p {err}") from None
    return typed


def _rerun(args: argparse.Namespace, strategy: str, typed: dict[str, Any], seed: int) -> str:
    """The command that replays this run's plan (the database by ``$DATABASE_URL``)."""
    from experiments.params import assignments

    words = ["coupon-chaos", "locust", args.scenario, "--processes", str(args.processes)]
    if strategy != "row_lock":
        words += ["--strategy", strategy]
    if args.target is not None:
        words += ["--target", args.target]
    if args.expect_workers is not None:
        words += ["--expect-workers", str(args.expect_workers)]
    words += assignments(typed)
    url = ' --database-url "$DATABASE_URL"' if database_url(args.database_url) else ""
    return f"{shlex.join(words)}{url} {shlex.join(['--seed', str(seed)])}"


def run(args: argparse.Namespace) -> int:
    # -- check everything, before any work ------------------------------------------------
    if args.processes < 0:
        raise UsageError("--processes must be at least 0")
    if args.master_host:
        return _join(args)
    if not args.scenario:
        raise UsageError("give a SCENARIO (coupon-chaos locust --help)")
    from experiments.locust import LOCUST_SCENARIOS, SwarmError, parse_hostport

    if args.scenario not in LOCUST_SCENARIOS:
        raise UsageError(
            f"Locust cannot drive {args.scenario!r}; it drives {', '.join(LOCUST_SCENARIOS)}"
        )
    from experiments.params import parse_assignments

    given = parse_assignments(args.parameters)
    strategy = _strategy(args, given)
    typed = _parameters(args.scenario, given)
    if args.master_bind:
        parse_hostport(args.master_bind)
    if args.target is not None:
        from experiments.lab import LabError, check_target

        try:
            check_target(args.target)
        except LabError as err:
            raise UsageError(f"--target: {err}") from None
    out = check_out_dir(results_dir(args.results)).resolve()
    url = database_url(args.database_url)
    if url is not None:
        check_reachable(url)
    # -- run ------------------------------------------------------------------------------
    from coupon_core.redact import redact_url
    from experiments.locust import run_locust, save_locust_reports
    from experiments.run_record import new_run_id
    from experiments.suite import record

    started = datetime.now(UTC)
    t0 = time.monotonic()
    run_id = new_run_id(started)
    run_dir = out / run_id
    try:
        result = run_locust(
            args.scenario,
            processes=args.processes,
            seed=args.seed,
            strategy=strategy,
            database_url=url,
            target=args.target,
            op_timeout_s=args.op_timeout,
            run_timeout_s=args.run_timeout,
            # Locust's logs and its own report, per attempt (<prefix>/), in the run's folder.
            out_dir=run_dir / "locust",
            master_bind=args.master_bind,
            expect_workers=args.expect_workers,
            **typed,
        )
    except UsageError:
        raise
    except (ValueError, TypeError, KeyError, SwarmError) as err:
        logs = f" (Locust's logs: {run_dir / 'locust'})" if run_dir.exists() else ""
        message = str(err).strip("'\"")  # a KeyError's message comes quoted
        raise CommandError(f"{message}{logs}") from None
    report = record.record_result(
        result,
        out,
        run_id,
        started_at=started.isoformat(timespec="seconds"),
        duration_s=time.monotonic() - t0,
        rerun=_rerun(args, strategy, typed, result.seed),
        parameters=typed,
        database="embedded" if url is None else redact_url(url),
        save_more=lambda data_dir: save_locust_reports(result, data_dir),
    )
    _print(result)
    print(
        f"run {report.run_id} (seed {report.seed}): {report.words}"
        f" in {report.duration_s:.1f} s; report: {report.run_dir / 'index.html'}"
    )
    if report.previous:
        print(
            f"compared with the previous run {report.previous}: {report.run_dir / 'compare.html'}"
        )
    if args.open:
        from experiments.commands.open import open_page

        open_page(report.run_dir / "index.html")
    return 0 if report.passed else 1


def _print(result: Any) -> None:
    s = result.summary
    print(f"outcomes: {result.outcomes()}")
    print(
        f"start spread {s['start_spread_ms']} ms over users, {s['process_start_spread_ms']} ms "
        f"over processes; peak overlap {s['peak_overlap']} ops "
        f"({s['peak_overlap_by_process']}); widening ±{s['widening_ms']} ms "
        f"(bound {s.get('max_clock_uncertainty_ms')} ms)"
    )
    for name, clock in s["clocks"].items():
        print(f"  {name}: {clock}")
    for name, stats in s["locust_stats"].items():
        print(f"  locust {name}: {stats}")
    for v in result.verdicts:
        print(f"{v.label:7} {v.name}: {v.detail}")
    print(f"{'PASSED' if result.passed else 'FAILED'} {result.scenario} seed={result.seed}")
