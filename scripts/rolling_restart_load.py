"""Rolling restarts under process_crash's load: how many requests fail while the workers roll.

The load is process_crash's claim stream (``experiments.faults.steady_load``):
``--load-workers`` threads (16), each on one kept-alive connection of the lab's own HTTP
client, claiming for a new user every time on two coupons of ample stock, one read in ten.
Each run starts a fresh supervised group of ``--server-workers`` (2), lets the load run
``--warm-s``, rolls every worker (``ServerGroup.rolling_restart()``, or with
``--via serve`` a SIGHUP to a ``coupon-chaos serve --workers N`` subprocess), goes on
``--after-s``, then stops the load. Every op whose result is not ``ok`` is a failure
(any kind: a refusal is a failure too on coupons that cannot run out).

    .venv/bin/python scripts/rolling_restart_load.py --runs 20
    .venv/bin/python scripts/rolling_restart_load.py --runs 5 --via serve

Prints one line per run (ops, failures by kind, the restart's seconds) and a summary;
exits 1 if any run failed a request.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from coupon_core import EmbeddedPostgres  # noqa: E402
from coupon_core.database import free_port  # noqa: E402
from coupon_core.workers import serve_processes  # noqa: E402
from experiments.faults.steady_load import SteadyLoad  # noqa: E402


def _setup(db_url: str, prefix: str) -> None:
    with psycopg.connect(db_url, autocommit=True) as conn:
        for i in range(2):
            conn.execute(
                "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, %s, %s)",
                (f"{prefix}-c{i}", 1_000_000, 1_000_000),
            )


def _serve_subprocess(
    db_url: str, workers: int, pool_size: int
) -> tuple[subprocess.Popen[str], str, Callable[[], float]]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=db_url, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [
            *(sys.executable, "-m", "experiments.cli", "serve", "--port", str(port)),
            *("--workers", str(workers), "--pool-size", str(pool_size)),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stdout is not None
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise SystemExit("serve exited before it served")
        if line.startswith("worker pids:"):
            break

    def restart() -> float:
        assert proc.stdout is not None
        t0 = time.monotonic()
        proc.send_signal(signal.SIGHUP)
        while time.monotonic() - t0 < 60:
            line = proc.stdout.readline()
            if not line:
                raise SystemExit("serve exited during the rolling restart")
            if line.startswith("rolling restart done"):
                return time.monotonic() - t0
        raise SystemExit("no rolling restart within 60 s")

    return proc, f"http://127.0.0.1:{port}", restart


def one_run(db_url: str, args: argparse.Namespace) -> tuple[int, Counter[str], float, list[str]]:
    prefix = f"r{uuid.uuid4().hex[:8]}"
    _setup(db_url, prefix)
    proc: subprocess.Popen[str] | None = None
    if args.via == "serve":
        proc, url, restart = _serve_subprocess(db_url, args.server_workers, args.pool_size)
        group = None
    else:
        group = serve_processes(
            db_url, processes=args.server_workers, pool_size=args.pool_size, supervise=True
        )
        url = group.url

        def restart() -> float:
            assert group is not None
            t0 = time.monotonic()
            group.rolling_restart()
            return time.monotonic() - t0

    load = SteadyLoad(url, [f"{prefix}-c0", f"{prefix}-c1"], args.load_workers, read_every=10)
    try:
        load.start()
        time.sleep(args.warm_s)
        took = restart()
        time.sleep(args.after_s)
    finally:
        ops = load.stop()
        if group is not None:
            group.stop()
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
    failed = [o for o in ops if o.result != "ok"]
    kinds = Counter(o.result for o in failed)
    messages = sorted({o.message or "" for o in failed})[:5]
    return len(ops), kinds, took, messages


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--via", choices=("group", "serve"), default="group")
    p.add_argument("--server-workers", type=int, default=2)
    p.add_argument("--load-workers", type=int, default=16)
    p.add_argument("--pool-size", type=int, default=10)
    p.add_argument("--warm-s", type=float, default=1.0)
    p.add_argument("--after-s", type=float, default=0.5)
    p.add_argument("--database-url", default=None)
    args = p.parse_args()
    db = None
    if args.database_url:
        db_url = args.database_url
    else:
        db = EmbeddedPostgres.create()
        db.start()
        db_url = db.url
    clean = 0
    totals: Counter[str] = Counter()
    try:
        from coupon_core import schema

        schema.apply_schema(db_url)
        for run in range(1, args.runs + 1):
            n, kinds, took, messages = one_run(db_url, args)
            clean += not kinds
            totals.update(kinds)
            print(
                f"run {run}: {n} ops, {sum(kinds.values())} failed {dict(kinds)},"
                f" rolling restart {took:.2f}s {messages if messages else ''}",
                flush=True,
            )
    finally:
        if db is not None:
            db.close()
    print(f"{clean} of {args.runs} runs without a failed request; failures {dict(totals)}")
    return 0 if clean == args.runs else 1


if __name__ == "__main__":
    sys.exit(main())
