"""``coupon-chaos run``: execute the scenario notebooks headless and write the report."""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments import suite
from experiments.cli import CommandError

NAME = "run"
HELP = "run the scenario notebooks against one database; write results/<run-id>/"

_LAYER_CHOICES = {"service": ("service",), "http": ("http",), "both": suite.LAYERS}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help="scenarios to run (default: all)"
    )
    parser.add_argument(
        "--layer",
        choices=tuple(_LAYER_CHOICES),
        default=None,
        help="call the service in-process, over HTTP, or both (default: service; http "
        "with --target)",
    )
    parser.add_argument(
        "--group",
        choices=("all", "catalog", "faults"),
        default="all",
        help="without SCENARIO names: every notebook (default), only the concurrency "
        "catalog's, or only the fault scenarios'",
    )
    parser.add_argument("--strategy", default="row_lock", help="claim strategy (default: row_lock)")
    parser.add_argument(
        "--seed", type=int, default=None, help="run seed (default: drawn; printed and recorded)"
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
        help="run over HTTP against this server (http://host:port), one the lab did not "
        "start; with --database-url (its database) every check runs, without it the "
        "checks that read the tables are skipped; scenarios that need more (the "
        "in-process service, server processes, a superuser, the database process) are "
        "skipped with the reason",
    )
    parser.add_argument(
        "--cleanup",
        action="store_true",
        help="each scenario deletes its own rows (its run prefix) afterwards",
    )
    parser.add_argument(
        "--out", type=Path, default=Path("results"), help="results folder (default: results)"
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        # Measured on the 2-core machine, 14 notebooks: 1 at a time 55 s, 2 at a time 62 s;
        # the notebooks are CPU-bound and parallel runs also skew each other's latencies.
        help="notebooks run at a time (default: 1)",
    )
    parser.add_argument(
        "--hide-code",
        action="store_true",
        help="also render each report without its code cells",
    )
    parser.add_argument(
        "--notebooks",
        type=Path,
        default=suite.NOTEBOOKS_DIR,
        help="folder of notebooks (default: the project's notebooks/)",
    )


def _chosen(args: argparse.Namespace) -> list[str] | None:
    """The scenario names to run; None for every notebook found."""
    if args.scenarios:
        if args.group != "all":
            raise CommandError("give SCENARIO names or --group, not both")
        return list(args.scenarios)
    if args.group == "all":
        return None
    from experiments.scenarios import CATALOG, FAULTS

    group = CATALOG if args.group == "catalog" else FAULTS
    # Only the group's scenarios that have a notebook (a fault may have none yet).
    have = {nb.scenario for nb in suite.discover(args.notebooks)}
    chosen = [name for name in group if name in have]
    if not chosen:
        raise CommandError(f"no notebook in {args.notebooks} for the {args.group} group")
    return chosen


def _layers(args: argparse.Namespace) -> tuple[str, ...]:
    if args.target is None:
        return _LAYER_CHOICES[args.layer or "service"]
    if args.layer not in (None, "http"):
        raise CommandError(f"--target is reached over HTTP: --layer {args.layer} cannot apply")
    from experiments.lab import LabError, check_target

    try:
        check_target(args.target)
    except LabError as err:
        raise CommandError(str(err)) from err
    return ("http",)


def run(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        raise CommandError("--jobs must be at least 1")
    layers = _layers(args)
    scenarios = _chosen(args)
    with suite.progress_reporter() as progress:
        try:
            report = suite.run_suite(
                scenarios,
                layers=layers,
                strategy=args.strategy,
                seed=args.seed,
                database_url=args.database_url,
                out=args.out,
                jobs=args.jobs,
                hide_code=args.hide_code,
                notebooks_dir=args.notebooks,
                progress=progress,
                target=args.target,
                cleanup=args.cleanup,
            )
        except ValueError as err:
            raise CommandError(str(err)) from err
    passed = sum(j.passed for j in report.jobs)
    skipped = f", {len(report.skipped)} skipped" if report.skipped else ""
    print(
        f"run {report.run_id} (seed {report.seed}): {passed} of {len(report.jobs)} passed"
        f"{skipped} in {report.duration_s:.1f} s; report: {report.run_dir / 'index.html'}"
    )
    for job in report.jobs:
        for check in job.failures:
            print(f"FAILED {job.name} [{job.layer}]: {check['name']}: {check['detail']}")
    return 0 if report.passed else 1
