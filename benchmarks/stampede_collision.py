"""Do stampedes collide? Start spread, peak in flight and overlap with the winner, before and after.

A stampede of ``--workers`` users on a coupon of stock 1, ``--rounds`` times per row,
through the lab's runner (threads released together) against a real database:

    service before   in-process service calls released by a ``threading.Barrier``
                     (whose waiters retake one lock in turn), as before issue 10
    service after    released by the runner's gate (a lock per worker, opened in one loop)
    http  before     the pooled httpx client the lab used until issue 10 (connections
                     opened on first use, requests built after the release), Barrier
    http  after      ``experiments.clients.HttpClient`` (one warm connection per worker,
                     request bytes encoded before the release), gate

Every round opens a fresh lab (service, pool, server): each is a scenario's first
stampede.

Goals (issue 10 §4), for 100 workers on 2 cores: start spread < 5 ms on the service
layer and < 10 ms over HTTP, peak in flight >= 80% of the workers. Figures, not a
test: it prints MET or MISSED beside each median. The machine is shared; say so
beside any figure you quote.

    .venv/bin/python benchmarks/stampede_collision.py [--workers 100] [--rounds 5] [--seed 1]
"""

from __future__ import annotations

import argparse
import os
import statistics
import threading
from typing import Any
from urllib.parse import quote

import httpx

from coupon_core.database import provision
from experiments.clients import Client
from experiments.history import History, Op, collision
from experiments.lab import open_lab
from experiments.plans import stampede_plan
from experiments.runner import run_plan

GOALS = {"service": 5.0, "http": 10.0}
PEAK_GOAL = 0.8


class PooledHttpxClient:
    """The lab's HTTP client before issue 10 (one shared httpx pool), kept for the "before" row."""

    layer = "http"

    def __init__(self, base_url: str, *, timeout_s: float = 10.0, max_connections: int = 100):
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        self.http = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(timeout_s, pool=timeout_s),
            limits=limits,
            trust_env=False,
        )
        self._lock = threading.Lock()

    def invoke(self, op: Op, history: History | None = None) -> Op:
        import time

        op.invoke_ns = time.monotonic_ns()
        try:
            if op.kind == "claim":
                r = self.http.post(
                    "/api/coupons/claim", json={"user_id": op.user, "coupon_name": op.coupon}
                )
            elif op.kind == "create":
                r = self.http.post("/api/coupons", json={"name": op.coupon, "amount": op.amount})
            else:
                r = self.http.get(f"/api/coupons/{quote(op.coupon, safe='')}")
            op.http_status = r.status_code
            op.result = "ok" if r.status_code < 300 else "no_stock"
        except httpx.HTTPError as err:
            op.result = "unknown"
            op.message = type(err).__name__
        op.complete_ns = time.monotonic_ns()
        if history is not None:
            history.append(op)
        return op

    def close(self) -> None:
        self.http.close()


def _round(
    client: Client, setup: Client, workers: int, seed: int, prefix: str, release_by: Any
) -> dict[str, Any]:
    plan = stampede_plan(seed, prefix, stock=1, users=workers)
    name, amount = plan.setup[0]
    made = setup.invoke(Op(-1, -1, "create", name, amount=amount))
    if made.result != "ok":
        raise RuntimeError(f"setup create ended {made.result}: {made.message}")
    history = History()
    report = run_plan(plan, client, history, run_timeout_s=60.0, release_by=release_by)
    oks = sum(1 for o in history.ops if o.result == "ok")
    if oks != 1:
        raise RuntimeError(f"a stampede on stock 1 had {oks} winners")
    figures = collision(history.ops, workers)
    return {"spread_ms": report.start_spread_ms or 0.0, **figures}


def _row(
    label: str, layer: str, rounds: list[dict[str, Any]], workers: int
) -> tuple[str, str, str, str, str]:
    spreads = [r["spread_ms"] for r in rounds]
    peaks = [r["peak_in_flight"] for r in rounds]
    overlaps = [r["overlap_with_winner"] or 0.0 for r in rounds]
    spread = statistics.median(spreads)
    peak = statistics.median(peaks)
    spread_ok = "MET" if spread < GOALS[layer] else "MISSED"
    peak_ok = "MET" if peak >= PEAK_GOAL * workers else "MISSED"
    return (
        label,
        f"{spread:7.2f} ({min(spreads):.2f}-{max(spreads):.2f}) < {GOALS[layer]:.0f} {spread_ok}",
        f"{peak:5.0f} ({min(peaks)}-{max(peaks)}) >= {PEAK_GOAL * workers:.0f} {peak_ok}",
        f"{statistics.median(overlaps):.2f} ({min(overlaps):.2f}-{max(overlaps):.2f})",
        f"{len(rounds)}",
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not 1 <= args.workers <= 500 or not 1 <= args.rounds <= 50:
        parser.error("--workers must be 1..500 and --rounds 1..50")
    url = os.environ.get("DATABASE_URL")
    handle = None if url else provision(None)
    url = url or (handle.url if handle else None)
    rows = []
    # Each round is a scenario's first stampede: a fresh lab (service pool, server).
    variants: list[tuple[str, str, bool]] = [
        ("service before (Barrier)", "service", False),
        ("service after (gate)", "service", True),
        ("http before (pooled httpx, Barrier)", "http", False),
        ("http after (warm conns, prepared, gate)", "http", True),
    ]
    try:
        for label, layer, after in variants:
            rounds = []
            for i in range(args.rounds):
                with open_lab(
                    scenario="bench", layer=layer, database_url=url, workers=args.workers
                ) as lab:
                    client: Client = lab.client
                    if layer == "http" and not after:
                        client = PooledHttpxClient(lab.server.url, max_connections=args.workers)
                    try:
                        rounds.append(
                            _round(
                                client,
                                lab.client,
                                args.workers,
                                args.seed + i,
                                lab.prefix,
                                "gate" if after else "barrier",
                            )
                        )
                    finally:
                        if client is not lab.client:
                            client.close()
            rows.append(_row(label, layer, rounds, args.workers))
    finally:
        if handle is not None:
            handle.close()
    load = os.getloadavg()
    print(
        f"stampede of {args.workers} workers on stock 1, {args.rounds} rounds each, seed {args.seed};"
        f" {os.cpu_count()} cores, load average {load[0]:.1f} (shared with other work)"
    )
    header = (
        "row",
        "start spread ms median (min-max)",
        "peak in flight",
        "overlap w/ winner",
        "rounds",
    )
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for line in (header, *rows):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
