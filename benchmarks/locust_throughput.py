"""Claims/s the lab generates against one server: Locust worker processes vs threads in one process.

One server (``serve_processes``, one uvicorn process by default, outside this
process), one embedded PostgreSQL, ``--coupons`` coupons with stock that never runs
out, every claim by a distinct user. The same plan (``--ops`` claims over
``--users`` plan workers) runs through the lab's threaded runner with one shared
``HttpClient`` (threads in this process), then from a Locust master and 1, 2, 4
local worker processes (``--processes``), in interleaved rounds so drift hits all
alike. Claims/s is ops over the span from the first invoke to the last completion
(the start lead and process start-up are not counted). Not a timed test: a figure
to read, printed side by side.

    .venv/bin/python benchmarks/locust_throughput.py [--ops 3000] [--users 32] [--rounds 2]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from pathlib import Path

from coupon_core import EmbeddedPostgres
from coupon_core.workers import serve_processes
from experiments.clients import HttpClient
from experiments.history import History, Op
from experiments.locust import merge, run_swarm
from experiments.plans import Plan, PlannedOp
from experiments.runner import run_plan


def _plan(seed: int, prefix: str, ops: int, users: int, coupons: int) -> Plan:
    rng = random.Random(seed)
    names = [f"{prefix}-c{i}" for i in range(coupons)]
    planned = tuple(
        PlannedOp(i, i % users, "claim", rng.choice(names), user=f"u{i}-{prefix}")
        for i in range(ops)
    )
    return Plan(
        seed=seed,
        prefix=prefix,
        workers=users,
        ops=planned,
        setup=tuple((n, 2_000_000_000) for n in names),
        shape="throughput",
    )


def _rate(ops: list[Op]) -> tuple[float, int, float]:
    span = (max(o.complete_ns for o in ops) - min(o.invoke_ns for o in ops)) / 1e9
    ok = sum(o.result == "ok" for o in ops)
    p50 = statistics.median(o.latency_ns / 1e6 for o in ops)
    return (len(ops) / span if span > 0 else 0.0), ok, p50


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ops", type=int, default=3000, help="claims per run")
    parser.add_argument("--users", type=int, default=32, help="plan workers (threads or users)")
    parser.add_argument("--coupons", type=int, default=64)
    parser.add_argument("--processes", default="1,2,4", help="Locust worker counts")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--server-processes", type=int, default=1)
    parser.add_argument("--strategy", default="atomic")
    args = parser.parse_args(argv)
    counts = [int(p) for p in args.processes.split(",")]
    seed = random.SystemRandom().randrange(1, 10**6)
    print(
        f"seed {seed}; {args.ops} claims over {args.users} users on {args.coupons} coupons; "
        f"server: {args.server_processes} process(es), {args.strategy}"
    )
    rates: dict[str, list[float]] = {}
    oks: dict[str, int] = {}
    p50s: dict[str, list[float]] = {}
    with (
        EmbeddedPostgres.create() as db,
        serve_processes(
            db.url,
            processes=args.server_processes,
            strategy=args.strategy,
            pool_size=min(args.users, 32),
        ) as server,
        tempfile.TemporaryDirectory() as tmp,
    ):
        setup = HttpClient(server.url, max_connections=1)
        run = 0
        for r in range(args.rounds):
            for generator in ["threads", *(f"locust x{n}" for n in counts)]:
                run += 1
                plan = _plan(seed + run, f"b{run}-{r}", args.ops, args.users, args.coupons)
                for name, amount in plan.setup:
                    setup.invoke(Op(-1, -1, "create", name, amount=amount))
                if generator == "threads":
                    history = History()
                    client = HttpClient(server.url, max_connections=args.users)
                    try:
                        run_plan(plan, client, history, run_timeout_s=300.0)
                    finally:
                        client.close()
                    ops = history.ops
                else:
                    n = int(generator.split("x")[1])
                    swarm = run_swarm(
                        plan, server.url, Path(tmp) / str(run), processes=n, run_timeout_s=300.0
                    )
                    merged = merge(
                        swarm.reports,
                        plan,
                        window=(swarm.go_ns, swarm.end_ns),
                        placement="corrected",
                    )
                    ops = merged.ops
                rate, ok, p50 = _rate(ops)
                rates.setdefault(generator, []).append(rate)
                p50s.setdefault(generator, []).append(p50)
                oks[generator] = oks.get(generator, 0) + ok
                print(f"  round {r + 1} {generator:10} {rate:8.0f} claims/s  ok {ok}/{len(ops)}")
        setup.close()
    base = statistics.median(rates["threads"])
    print(f"\n{'generator':12} {'claims/s (median)':>18} {'vs threads':>11} {'p50 ms':>8}  rounds")
    for generator, values in rates.items():
        med = statistics.median(values)
        print(
            f"{generator:12} {med:18.0f} {med / base:11.2f} {statistics.median(p50s[generator]):8.1f}  "
            + ", ".join(f"{v:.0f}" for v in values)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
