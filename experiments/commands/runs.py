"""``coupon-chaos runs``: the past runs of a results folder; prune the old ones."""

from __future__ import annotations

import argparse
import shutil
import sys

from experiments.cli_checks import results_dir
from experiments.commands import add_results_option
from experiments.errors import UsageError

NAME = "runs"
HELP = (
    "list past runs (id, when, seed, status, passed/failed/skipped, duration); "
    "--prune N keeps the newest N"
)


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run",
        nargs="?",
        default=None,
        metavar="RUN",
        help="with --markdown: the run to show (id, folder, latest, previous)",
    )
    add_results_option(parser, "where the runs are")
    parser.add_argument(
        "--prune",
        type=_at_least_one,
        default=None,
        metavar="N",
        help="delete all but the newest N runs",
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="print RUN's verdict table as Markdown (for $GITHUB_STEP_SUMMARY)",
    )


def run(args: argparse.Namespace) -> int:
    from experiments import compare

    results = results_dir(args.results)
    if args.markdown:
        run_dir = compare.find_run(args.run or "latest", results)  # RunNotFound: exit 2
        print(compare.markdown_verdicts(run_dir), end="")
        return 0
    if args.run is not None:
        raise UsageError("RUN is only read with --markdown; coupon-chaos open RUN shows a run")
    runs = compare.list_runs(results)
    if args.prune is not None:
        # The run results/latest points at is never pruned, even behind a newer unfinished one.
        link = results / "latest"
        latest = link.resolve() if link.is_symlink() else None
        doomed = [r for r in runs[: max(len(runs) - args.prune, 0)] if r.path.resolve() != latest]
        for info in doomed:
            shutil.rmtree(info.path)
        print(
            f"pruned {len(doomed)} run{'' if len(doomed) == 1 else 's'}; kept {len(runs) - len(doomed)}"
        )
        runs = [r for r in runs if r not in doomed]
    if not runs:
        print(f"no runs in {results}")
        return 0
    # Which folder was read, on stderr: stdout stays the table (scripts parse it).
    print(f"runs in {results}", file=sys.stderr)
    print(
        f"{'run':26} {'started':26} {'seed':>10} {'status':13} {'passed':>7} {'failed':>7} "
        f"{'skipped':>7} {'duration':>9} {'checks-skipped':>14}"
    )
    for info in runs:
        if not info.complete:
            print(f"{info.run_id:26} (incomplete: no summary.json)")
            continue
        duration = "-" if info.duration_s is None else f"{info.duration_s:.1f} s"
        # Skipped scenarios are neither passed nor failed: a target run is not a failure.
        print(
            f"{info.run_id:26} {info.started_at:26} {info.seed!s:>10} {info.shown_status:13} "
            f"{info.passed:>7} {info.failed:>7} {info.skipped:>7} {duration:>9} "
            f"{info.checks_skipped:>14}"
        )
    return 0
