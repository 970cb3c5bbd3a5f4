"""Claims per second on one hot coupon, per strategy, through the service layer.

A real embedded PostgreSQL, ``CouponService.claim`` from 16 threads, distinct users,
stock that never runs out. Each strategy gets ``--seconds`` in all, split into
``--rounds`` interleaved slices (a fresh hot coupon each), so drift hits all alike.

    .venv/bin/python benchmarks/claim_throughput.py [--workers 16] [--seconds 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import random
import sys

from coupon_core import CouponService, EmbeddedPostgres, ServiceConfig, available_strategies
from experiments.bench import check_conservation, create_coupons, quantile_ms, service_load


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=3.0, help="per strategy, in all")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)
    strategies = available_strategies()
    seed = random.SystemRandom().randrange(1, 10**6)
    print(f"seed {seed}; {args.workers} workers; {args.seconds:g} s per strategy")
    claims = dict.fromkeys(strategies, 0)
    elapsed = dict.fromkeys(strategies, 0.0)
    latencies: dict[str, list[int]] = {s: [] for s in strategies}
    per_round: dict[str, list[float]] = {s: [] for s in strategies}
    conserved = True
    with EmbeddedPostgres.create() as db:
        services = {
            s: CouponService.connect(
                db.url, ServiceConfig(strategy=s, pool_min=args.workers, pool_max=args.workers)
            )
            for s in strategies
        }
        try:
            for svc in services.values():
                svc.pool.wait(timeout=30)
            order = 0
            for rnd in range(args.rounds):
                # Rotate the order each round so no strategy always runs first.
                k = rnd % len(strategies)
                for strategy in strategies[k:] + strategies[:k]:
                    names = create_coupons(db.url, (10**8 + seed) * 10**6 + order * 100, 1)
                    load = service_load(
                        services[strategy],
                        names,
                        args.workers,
                        args.seconds / args.rounds,
                        f"t{seed}-{order}",
                    )
                    rows, ok = check_conservation(db.url, names)
                    conserved = conserved and ok and rows == load.claims and not load.errors
                    claims[strategy] += load.claims
                    elapsed[strategy] += load.elapsed_s
                    latencies[strategy].extend(load.latencies_ns)
                    per_round[strategy].append(load.per_second)
                    order += 1
        finally:
            for svc in services.values():
                svc.close()
    print(f"{'strategy':<14}{'claims/s':>10}{'p50 ms':>9}{'p99 ms':>9}   per round")
    for s in strategies:
        rounds = " ".join(f"{r:.0f}" for r in per_round[s])
        print(
            f"{s:<14}{claims[s] / elapsed[s]:>10.0f}{quantile_ms(latencies[s], 0.5):>9.2f}"
            f"{quantile_ms(latencies[s], 0.99):>9.2f}   {rounds}"
        )
    print("conservation and claim rows: " + ("ok" if conserved else "VIOLATED"))
    return 0 if conserved else 1


if __name__ == "__main__":
    sys.exit(main())
