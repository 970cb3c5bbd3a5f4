"""``coupon-chaos locust``: a scenario's plan driven by a Locust master and worker processes."""

from __future__ import annotations

import argparse
import ast
from pathlib import Path
from typing import Any

from experiments.errors import CommandError, UsageError

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
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a scenario figure, e.g. -p users=200 -p stock=5",
    )
    parser.add_argument("--seed", type=int, default=None, help="plan seed (default: drawn)")
    parser.add_argument("--strategy", default="row_lock", help="claim strategy (default: row_lock)")
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
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results") / "locust",
        help="where the result, Locust's HTML report and logs go (default: results/locust)",
    )
    parser.add_argument(
        "--join-timeout",
        type=float,
        default=3600.0,
        help="with --master-host: stop the workers after this many seconds (default: 3600)",
    )


def _params(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"-p {pair!r}: expected NAME=VALUE")
        try:
            out[name] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            out[name] = text
    return out


def _join(args: argparse.Namespace) -> int:
    from experiments.locust import SwarmError, join_swarm, parse_hostport

    if args.scenario:
        raise UsageError("with --master-host the master decides the scenario: give none")
    parse_hostport(args.master_host)
    try:
        codes = join_swarm(
            args.master_host,
            processes=args.processes,
            log_dir=args.out / "workers",
            timeout_s=args.join_timeout,
        )
    except (ValueError, SwarmError) as err:
        raise CommandError(str(err)) from None
    print(f"workers ended: {codes}")
    return 0 if all(code == 0 for code in codes.values()) else 1


def run(args: argparse.Namespace) -> int:
    if args.processes < 0:
        raise UsageError("--processes must be at least 0")
    if args.master_host:
        return _join(args)
    if not args.scenario:
        raise UsageError("give a SCENARIO (coupon-chaos locust --help)")
    from experiments.locust import (
        LOCUST_SCENARIOS,
        SwarmError,
        parse_hostport,
        run_locust,
        save_locust_reports,
    )

    if args.scenario not in LOCUST_SCENARIOS:
        raise UsageError(
            f"Locust cannot drive {args.scenario!r}; it drives {', '.join(LOCUST_SCENARIOS)}"
        )
    params = _params(args.param)
    if args.master_bind:
        parse_hostport(args.master_bind)
    try:
        result = run_locust(
            args.scenario,
            processes=args.processes,
            seed=args.seed,
            strategy=args.strategy,
            database_url=args.database_url,
            target=args.target,
            op_timeout_s=args.op_timeout,
            run_timeout_s=args.run_timeout,
            out_dir=args.out,
            master_bind=args.master_bind,
            expect_workers=args.expect_workers,
            **params,
        )
    except UsageError:
        raise
    except (ValueError, TypeError, KeyError, SwarmError) as err:
        raise CommandError(str(err).strip("'\"")) from None
    saved = result.save(args.out)
    copied = save_locust_reports(result, args.out)
    _print(result)
    print(f"saved {saved}" + "".join(f"\nsaved {p}" for p in copied))
    return 0 if result.passed else 1


def _print(result: Any) -> None:
    s = result.summary
    print(f"outcomes: {result.outcomes()}")
    print(
        f"start spread {s['start_spread_ms']} ms over users, {s['process_start_spread_ms']} ms "
        f"over processes; peak overlap {s['peak_overlap']} ops "
        f"({s['peak_overlap_by_process']}); widening ±{s['widening_ms']} ms"
    )
    for name, clock in s["clocks"].items():
        print(f"  {name}: {clock}")
    for name, stats in s["locust_stats"].items():
        print(f"  locust {name}: {stats}")
    for v in result.verdicts:
        print(f"{v.label:7} {v.name}: {v.detail}")
    print(f"{'PASSED' if result.passed else 'FAILED'} {result.scenario} seed={result.seed}")
