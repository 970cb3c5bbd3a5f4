"""scale: stampedes of 100, 200 and 500 users on a tenth as much stock; latency by size."""

from __future__ import annotations

from typing import Any

from experiments.checks import expected_counts, remaining_equals, rows_equal, stampede_collided
from experiments.checks_leaks import ThreadBaseline
from experiments.lab import (
    invariant_verdicts,
    load_figures,
    open_lab,
    pool_stats_when_idle,
    state_figures,
)
from experiments.plans import stampede_plan
from experiments.result import Result, Verdict
from experiments.run_record import lab_result, start_run

NAME = "scale"
TITLE = "Scale"
DESCRIPTION = (
    "Stampedes of 100, 200 and 500 users, one after another, each on its own coupon "
    "with a tenth as much stock. Expected: exactly the stock succeeds, the rest out of "
    "stock, no errors; latency quantiles p50/p90/p99/max by size."
)
DEFAULTS: dict[str, Any] = {"sizes": (100, 200, 500), "stock_ratio": 0.1}


def run(
    *,
    seed: int | None = None,
    layer: str = "service",
    strategy: str = "row_lock",
    database_url: str | None = None,
    op_timeout_s: float = 10.0,
    run_timeout_s: float = 60.0,
    sizes: tuple[int, ...] | list[int] = (100, 200, 500),
    stock_ratio: float = 0.1,
    target: str | None = None,
    cleanup: bool = False,
) -> Result:
    sizes = tuple(int(s) for s in sizes)
    if not sizes or min(sizes) < 1:
        raise ValueError("sizes must be positive user counts")
    seed, prefix, started_at, t0 = start_run(NAME, seed, layer, strategy)
    # One seed for the run; each size's plan gets its own, derived deterministically.
    plans = [
        stampede_plan(
            seed + i, f"{prefix}-n{size}", stock=max(1, round(size * stock_ratio)), users=size
        )
        for i, size in enumerate(sizes)
    ]
    by_size: dict[str, Any] = {}
    verdicts: list[Verdict] = []
    app = f"coupon-{prefix}"[:63]  # run-unique: the leak check counts its backends
    baseline = ThreadBaseline()
    with open_lab(
        scenario=NAME,
        layer=layer,
        strategy=strategy,
        database_url=database_url,
        workers=max(sizes),
        op_timeout_s=op_timeout_s,
        prefix=prefix,
        service_overrides={"application_name": app},
        target=target,
    ) as lab:
        for size, plan in zip(sizes, plans, strict=True):
            lab.setup(plan)
            phase = f"size-{size}"
            report = lab.run(plan, phase=phase, run_timeout_s=run_timeout_s)
            by_size[str(size)] = {
                "stock": plan.setup[0][1],
                **load_figures(lab.history, report, phase),
            }
        state = lab.state()
        pool_stats = (
            None if lab.service_or_none is None else pool_stats_when_idle(lab.service_or_none)
        )
        cleaned = lab.cleanup() if cleanup else {}
    history = lab.history
    verdicts.extend(
        invariant_verdicts(lab, state, baseline=baseline, pool_stats=pool_stats, app=app)
    )
    for size, plan in zip(sizes, plans, strict=True):
        coupon, stock = plan.setup[0]
        wins = min(stock, size)
        verdicts += [
            expected_counts(
                history,
                "claim",
                {"ok": wins, "no_stock": size - wins},
                name=f"claim_counts_{size}",
                coupons=[coupon],
            ),
            remaining_equals(state, coupon, stock - wins, name=f"final_stock_{size}"),
            rows_equal(state, coupon, wins, name=f"claim_rows_{size}"),
            stampede_collided(
                history, size, phase=f"size-{size}", name=f"stampede_collided_{size}"
            ),
        ]
    summary = {
        "prefix": prefix,
        "outcomes": history.counts(),
        **state_figures(state),
        "by_size": by_size,
        "latency_by_size": {k: v["latency"] for k, v in by_size.items()},
        "start_spread_ms_by_size": {k: v["start_spread_ms"] for k, v in by_size.items()},
        "peak_in_flight_by_size": {k: v["peak_in_flight"] for k, v in by_size.items()},
        "overlap_with_winner_by_size": {k: v["overlap_with_winner"] for k, v in by_size.items()},
        "throughput_by_size": {k: v["throughput_ops_s"] for k, v in by_size.items()},
        **cleaned,
    }
    return lab_result(
        NAME,
        seed=seed,
        layer=layer,
        strategy=strategy,
        database_url=database_url,
        op_timeout_s=op_timeout_s,
        run_timeout_s=run_timeout_s,
        params={"sizes": list(sizes), "stock_ratio": stock_ratio, "target": target},
        history=history,
        verdicts=verdicts,
        summary=summary,
        started_at=started_at,
        t0=t0,
    )
