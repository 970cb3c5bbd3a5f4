"""``coupon-chaos run``: execute the scenario notebooks headless and write the report.

Everything is checked before any work (scenario names, layers, strategy, ``-p``
parameters against their types and declared ranges, the database URL and whether it
answers, ``--results``): a refused run starts nothing and leaves no folder behind. A
bare ``coupon-chaos run`` runs nothing: it prints usage (the whole suite is ``run all``).
"""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path
from typing import Any

from experiments import suite, suite_report
from experiments.cli_checks import (
    CONNECT_TIMEOUT_S,
    check_choices,
    check_out_dir,
    check_reachable,
    database_url,
    results_dir,
)
from experiments.commands import add_results_option
from experiments.errors import CommandError, UsageError

NAME = "run"
HELP = "run the scenario notebooks against one database; write results/<run-id>/"

_LAYER_CHOICES = {"service": ("service",), "http": ("http",), "both": suite.LAYERS}
# Literal here (not read from the registry) so that --help needs no scenario imports;
# tests/experiments/test_cli_errors.py holds it equal to experiments.scenarios.GROUPS.
_GROUPS = ("all", "catalog", "faults", "replication", "distributed", "isolation")
_DATABASES = ("embedded", "docker")


def strategy_choices() -> list[str]:
    """The real strategies, then the lab's mutants (``mutant:<bug>``): the spec's."""
    from experiments.spec import strategy_names

    return strategy_names()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    layers = suite.scenario_layers()
    only = {name: ls for name, ls in layers.items() if set(ls) != set(suite.LAYERS)}
    notes = "; ".join(f"{n}: {','.join(ls)} only" for n, ls in only.items())
    parser.add_argument(
        "scenarios",
        nargs="*",
        metavar="SCENARIO",
        help=f"scenarios to run, or all (every notebook): {', '.join(layers)}"
        + (f" ({notes})" if notes else ""),
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
        choices=_GROUPS,
        default=None,
        help="instead of SCENARIO names: one group's notebooks: "
        + ", ".join(_GROUPS[1:])
        + " (all: every notebook)",
    )
    parser.add_argument(
        "--strategy",
        choices=strategy_choices(),
        default=None,
        metavar="STRATEGY",
        help=f"claim strategy (default: row_lock): {', '.join(strategy_choices())}",
    )
    parser.add_argument(
        "-p",
        "--parameter",
        action="append",
        default=[],
        dest="parameters",
        metavar="NAME=VALUE",
        help="set a notebook parameter, typed like its default (repeatable; "
        "coupon-chaos list shows them), e.g. -p users=200 -p stock=3",
    )
    parser.add_argument(
        "--seed",
        type=int,
        default=None,
        help="run seed (default: drawn); one scenario runs with it exactly, several each "
        "with one derived from it (printed and recorded)",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="use this PostgreSQL (default: $DATABASE_URL, else --database)",
    )
    parser.add_argument(
        "--database",
        choices=_DATABASES,
        default="embedded",
        help="without a URL: an embedded PostgreSQL 18 (default), or a container "
        "(docker: needs the docker extra and a running Docker)",
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
    add_results_option(parser, "the run lands in DIR/<run-id>/ and DIR/latest points at it")
    parser.add_argument(
        "--jobs",
        type=int,
        default=None,
        # experiments.suite.schedule says why one per two cores, and which run alone.
        help="notebooks run at a time (default: one per two cores, here "
        f"{suite.default_jobs()}); those that cannot share the machine (faults, "
        "clusters, scale, the notebooks of no scenario) run alone",
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
    parser.add_argument("--open", action="store_true", help="open the report in a browser")


def _chosen(args: argparse.Namespace, layers: dict[str, tuple[str, ...]]) -> list[str] | None:
    """The scenario names to run; None for every notebook found. Bare: usage."""
    if not args.scenarios and args.group is None:
        raise UsageError(
            "give SCENARIO names, all (every notebook) or --group GROUP", show_usage=True
        )
    if args.scenarios:
        if args.group is not None:
            raise UsageError("give SCENARIO names or --group, not both")
        if "all" in args.scenarios:
            if args.scenarios != ["all"]:
                raise UsageError("give all or SCENARIO names, not both")
            return None
        return check_choices(args.scenarios, list(layers), "scenario")
    if args.group == "all":
        return None
    from experiments.scenarios import GROUPS

    group = GROUPS[args.group]
    # Only the group's scenarios that have a notebook (a fault may have none yet).
    chosen = [name for name in group if name in layers]
    if not chosen:
        raise UsageError(f"no notebook in {args.notebooks} for the {args.group} group")
    return chosen


def _check_layers(chosen: list[str] | None, layer: str, layers: dict[str, tuple[str, ...]]) -> None:
    wanted = set(_LAYER_CHOICES[layer])
    names = chosen if chosen is not None else list(layers)
    if chosen is not None:
        for name in chosen:
            if not wanted & set(layers[name]):
                only = ",".join(layers[name])
                raise UsageError(
                    f"{name} runs on the {only} layer only; add --layer {only} (or --layer both)"
                )
    elif not any(wanted & set(layers[n]) for n in names):
        raise UsageError(f"no notebook in the run supports --layer {layer}")


def _overrides(
    args: argparse.Namespace, chosen: list[str] | None
) -> tuple[dict[str, dict[str, Any]], str]:
    """Typed -p values per scenario, and the strategy (``-p strategy=`` sets it too)."""
    from experiments.params import parse_assignments, resolve

    given = parse_assignments(args.parameters)
    strategy = args.strategy or "row_lock"
    if "strategy" in given:
        text = given.pop("strategy")
        strategy = text.strip("'\"")
        check_choices([strategy], strategy_choices(), "strategy")
        if args.strategy is not None and args.strategy != strategy:
            raise UsageError(
                f"-p strategy={text} conflicts with --strategy {args.strategy}: give one"
            )
    if not given:
        return {}, strategy
    notebooks = [
        nb for nb in suite.discover(args.notebooks) if chosen is None or nb.scenario in set(chosen)
    ]
    declared = {nb.scenario: nb.defaults for nb in notebooks}
    return resolve(given, declared), strategy


def _print_plan(run_seed: int, jobs: list[suite.Job]) -> None:
    scenarios = list(dict.fromkeys(job.notebook.scenario for job in jobs))
    seeds = {job.notebook.scenario: job.seed for job in jobs}
    if len(scenarios) == 1:
        print(f"seed {run_seed}: {scenarios[0]}", flush=True)
        return
    print(f"run seed {run_seed}; each scenario's seed derives from it:", flush=True)
    for name in scenarios:
        print(f"  {name:26} seed {seeds[name]}", flush=True)


def _layer(args: argparse.Namespace) -> str:
    """The layer choice: ``--layer`` (default service), or http against a ``--target``."""
    if args.target is None:
        return str(args.layer or "service")
    if args.layer not in (None, "http"):
        raise UsageError(f"--target is reached over HTTP: --layer {args.layer} cannot apply")
    from experiments.lab import LabError, check_target

    try:
        check_target(args.target)
    except LabError as err:
        raise UsageError(f"--target: {err}") from None
    return "http"


def _check_target_answers(target: str) -> None:
    """One TCP connection within the connect timeout: a target that is not there is one line."""
    import socket
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        socket.create_connection((parts.hostname or "", port), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise CommandError(
            f"cannot reach the target at {parts.hostname}:{port}: {reason}"
        ) from None


def run(args: argparse.Namespace) -> int:
    # -- check everything, before any work ------------------------------------------------
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    if not args.notebooks.is_dir():
        raise UsageError(f"--notebooks {args.notebooks}: not a folder")
    layers = suite.scenario_layers(args.notebooks)
    if not layers:
        raise UsageError(f"--notebooks {args.notebooks}: no notebook in it")
    layer = _layer(args)
    scenarios = _chosen(args, layers)
    _check_layers(scenarios, layer, layers)
    overrides, strategy = _overrides(args, scenarios)
    out = check_out_dir(results_dir(args.results))
    # Against a target only its own database, given by --database-url: never $DATABASE_URL.
    url = database_url(args.database_url) if args.target is None or args.database_url else None
    if url is not None and args.database != "embedded":
        raise UsageError("give --database-url (or DATABASE_URL) or --database docker, not both")
    if args.target is not None:
        _check_target_answers(args.target)
    if url is not None:
        check_reachable(url)
    if args.database == "docker" and importlib.util.find_spec("testcontainers") is None:
        raise CommandError(
            "cannot start the database: testcontainers is not installed: pip install '.[docker]'"
        )
    # -- run ------------------------------------------------------------------------------
    with suite.progress_reporter() as console:
        try:
            report = suite.run_suite(
                scenarios,
                layers=_LAYER_CHOICES[layer],
                strategy=strategy,
                seed=args.seed,
                database_url=url,
                out=out,
                jobs=args.jobs,
                hide_code=args.hide_code,
                notebooks_dir=args.notebooks,
                progress=console.finished,
                on_start=console.started,
                overrides=overrides,
                docker=args.database == "docker",
                on_plan=_print_plan,
                target=args.target,
                cleanup=args.cleanup,
            )
        except KeyboardInterrupt as err:
            # The run was recorded as interrupted: say where (the CLI says the rest).
            for note in getattr(err, "__notes__", []):
                print(note, flush=True)
            raise
        except ValueError as err:
            raise CommandError(str(err)) from err
        except _database_errors() as err:
            raise CommandError(f"cannot start the database: {err}") from None
    print(
        f"run {report.run_id} (seed {report.seed}): {_counts(report)}"
        f" in {report.duration_s:.1f} s; report: {report.run_dir / 'index.html'}"
    )
    if report.previous:
        print(
            f"compared with the previous run {report.previous}: {report.run_dir / 'compare.html'}"
        )
    for job in report.jobs:
        for check in job.failures:
            print(f"{_prefix(check)} {job.name} [{job.layer}]: {check['name']}: {check['detail']}")
        if job.status not in ("pass", "skipped"):
            print(f"  replay: {job.rerun}")
    if args.open:
        from experiments.commands.open import open_page

        open_page(report.run_dir / "index.html")
    return 0 if report.passed else 1


def _counts(report: suite_report.SuiteReport) -> str:
    """``3 of 5 passed, 1 skipped (not run), 7 checks skipped``: the run's one count."""
    return report.words


def _prefix(check: dict[str, Any]) -> str:
    """How a check that did not pass is named: a failure, a finding (the anomaly a
    known-unsafe configuration must show, caught), an unknown, or no experiment."""
    if check.get("validity"):
        return "NOT AN EXPERIMENT"
    if check["passed"] is False and check.get("finding") is not None:
        return "FINDING"
    return "FAILED" if check["passed"] is False else "UNKNOWN"


def _database_errors() -> tuple[type[Exception], ...]:
    from coupon_core.database import DatabaseError

    return (DatabaseError,)
