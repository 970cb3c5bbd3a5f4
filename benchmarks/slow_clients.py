"""Slow clients against a real server: the time to free each, and normal clients beside 500.

Starts an embedded PostgreSQL (or uses ``--database-url``) and one server worker
process (``coupon_core.workers``, as ``serve`` runs them) with ``--request-timeout``,
then in one run:

1. the time the server takes to free a slow connection: each probe of
   ``experiments.faults.slow_clients`` (slow headers, slow body, idle, cut body)
   ``--probes`` times, all at once; seconds from connect to the server's answer or
   close, and what it was;
2. normal clients (``--clients`` threads of ``experiments.faults.steady_load``, one
   kept-alive connection each, claiming for a new user every time) for ``--seconds``, without and then with a crowd of
   ``--slow`` slowloris connections held open (``SlowCrowd``: a header byte each per
   second, each one the server frees replaced at once); claims/s and latency
   quantiles side by side, and how many slow connections the server freed meanwhile.

    .venv/bin/python benchmarks/slow_clients.py
    .venv/bin/python benchmarks/slow_clients.py --slow 500 --seconds 10 --request-timeout 10

Prints the figures and MET/MISSED against the goals: every probe freed within the
request timeout plus 2 s; p99 with the crowd within 2x (and 50 ms) of p99 without.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from coupon_core import EmbeddedPostgres
from coupon_core.server import Limits
from coupon_core.workers import serve_processes
from experiments.faults.slow_clients import PROBES, ProbeResult, SlowCrowd, run_probe
from experiments.faults.steady_load import SteadyLoad


def _claims(url: str, coupon: str, clients: int, seconds: float) -> list[float]:
    """Latencies (s) of ``clients`` threads claiming for ``seconds``; exits on any failure."""
    ops = SteadyLoad(url, [coupon], clients).run_for(seconds)
    failed = Counter(f"{o.result} {o.http_status}" for o in ops if o.result != "ok")
    if failed:
        raise SystemExit(f"normal claims failed: {dict(failed)}")
    return [o.latency_ns / 1e9 for o in ops]


def _quantiles(lat: list[float], seconds: float) -> dict[str, float]:
    qs = statistics.quantiles(lat, n=100)
    return {
        "claims_s": len(lat) / seconds,
        "p50_ms": qs[49] * 1000,
        "p99_ms": qs[98] * 1000,
        "max_ms": max(lat) * 1000,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--database-url", default=None)
    p.add_argument("--request-timeout", type=float, default=10.0)
    p.add_argument("--probes", type=int, default=5, help="runs of each probe")
    p.add_argument("--slow", type=int, default=500, help="slow connections in the crowd")
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--seconds", type=float, default=10.0)
    args = p.parse_args()
    db = None
    if args.database_url:
        url = args.database_url
    else:
        db = EmbeddedPostgres.create()
        db.start()
        url = db.url
    ok = True
    try:
        limits = Limits(request_timeout_s=args.request_timeout)
        with serve_processes(url, processes=1, pool_size=10, limits=limits) as group:
            host, port = group.host, group.port
            coupon = f"bench-{uuid.uuid4().hex[:8]}"
            with psycopg.connect(url, autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, %s, %s)",
                    (coupon, 10_000_000, 10_000_000),
                )
            print(f"server: 1 worker process, request timeout {args.request_timeout:g}s")

            # 1. time to free a slow connection, every probe at once
            bound = args.request_timeout + 30
            jobs = [(name, i) for name in PROBES for i in range(args.probes)]
            with ThreadPoolExecutor(len(jobs)) as pool:
                results: list[ProbeResult] = list(
                    pool.map(lambda j: run_probe(j[0], host, port, bound_s=bound), jobs)
                )
            print("\ntime to free a slow connection (s, from connect), per probe:")
            for name in PROBES:
                rs = [r for r in results if r.probe == name]
                secs = sorted(r.seconds for r in rs)
                ends = Counter(
                    f"{r.ending}{'' if r.status is None else ' ' + str(r.status)}" for r in rs
                )
                worst = secs[-1]
                met = all(r.freed for r in rs) and worst <= args.request_timeout + 2
                ok &= met
                print(
                    f"  {name:13s} min {secs[0]:6.2f}  median {statistics.median(secs):6.2f}"
                    f"  max {worst:6.2f}  {dict(ends)}  {'MET' if met else 'MISSED'}"
                )

            # 2. normal clients, without and with the slow crowd
            _claims(group.url, coupon, args.clients, 1.0)  # warm
            alone = _quantiles(_claims(group.url, coupon, args.clients, args.seconds), args.seconds)
            with SlowCrowd(host, port, args.slow, interval_s=1.0) as crowd:
                deadline = time.monotonic() + 30
                while crowd.open_now < args.slow and time.monotonic() < deadline:
                    time.sleep(0.05)
                held = crowd.open_now
                beside = _quantiles(
                    _claims(group.url, coupon, args.clients, args.seconds), args.seconds
                )
                freed, opened = crowd.freed, crowd.opened
            print(
                f"\nnormal clients ({args.clients} threads, {args.seconds:g}s each), "
                f"without | with {held} slow connections open "
                f"(server freed {freed} of {opened} meanwhile):"
            )
            for key in ("claims_s", "p50_ms", "p99_ms", "max_ms"):
                print(f"  {key:9s} {alone[key]:10.1f} | {beside[key]:10.1f}")
            met = beside["p99_ms"] <= max(2 * alone["p99_ms"], alone["p99_ms"] + 50)
            ok &= met and held == args.slow
            print(f"  p99 with the crowd within 2x (or +50 ms): {'MET' if met else 'MISSED'}")
    finally:
        if db is not None:
            db.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
