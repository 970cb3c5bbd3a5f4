"""scale: stampedes of 100, 200 and 500 users on a tenth as much stock; latency by size."""

from __future__ import annotations

from typing import Any

from experiments.checks import (
    FinalState,
    Shared,
    expected_counts,
    remaining_equals,
    rows_equal,
    stampede_collided,
)
from experiments.figures import load_figures
from experiments.history import History
from experiments.pipeline import Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.plans import Plan, stampede_plan
from experiments.result import Result, Verdict
from experiments.runner import RunReport
from experiments.scenarios._shapes import WORKERS
from experiments.spec import Range, RunSpec, SpecError

NAME = "scale"
TITLE = "Scale"
DESCRIPTION = (
    "Stampedes of 100, 200 and 500 users, one after another, each on its own coupon "
    "with a tenth as much stock. Expected: exactly the stock succeeds, the rest out of "
    "stock, no errors; latency quantiles p50/p90/p99/max by size."
)
DEFAULTS: dict[str, Any] = {"sizes": (100, 200, 500), "stock_ratio": 0.1}


SHARED: Shared = "catalog"
_PER_SIZE = ("claim_counts", "final_stock", "claim_rows")


def CHECKS(spec: RunSpec) -> tuple[str, ...]:
    """Its own checks: the stampede's three per size (``claim_counts_100``, ...), then
    whether each size's stampede collided (validity checks come after expectations)."""
    sizes = [int(n) for n in spec["sizes"]]
    own = tuple(f"{c}_{n}" for n in sizes for c in _PER_SIZE)
    return own + tuple(f"stampede_collided_{n}" for n in sizes)


RANGES: dict[str, Range] = {"sizes": WORKERS, "stock_ratio": Range(0, 1, "a share of the users")}


def run(spec: RunSpec) -> Result:
    sizes = tuple(int(s) for s in spec["sizes"])
    stock_ratio = float(spec["stock_ratio"])
    if not sizes:
        raise SpecError("sizes: give at least one user count")
    by_size: dict[str, Any] = {}

    def make_plan(seed: int, prefix: str) -> Plan:
        # One seed for the run; each size's plan gets its own, derived deterministically.
        plans = [
            stampede_plan(
                seed + i, f"{prefix}-n{size}", stock=max(1, round(size * stock_ratio)), users=size
            )
            for i, size in enumerate(sizes)
        ]
        return Plan(
            seed=seed,
            prefix=prefix,
            workers=max(sizes),
            ops=(),
            setup=tuple(c for p in plans for c in p.setup),
            shape="scale",
            params={"plans": plans},
        )

    def plans(run: Run) -> list[Plan]:
        found: list[Plan] = list(run.plan.params["plans"])  # type: ignore[call-overload]
        return found

    def drive(run: Run) -> RunReport:
        # The stampedes one after another, each its own phase, in one lab.
        report: RunReport | None = None
        for size, plan in zip(sizes, plans(run), strict=True):
            phase = f"size-{size}"
            report = run.lab.run(plan, phase=phase, run_timeout_s=run.budget_s)
            by_size[str(size)] = {
                "stock": plan.setup[0][1],
                **load_figures(run.history, report, phase),
            }
        assert report is not None
        return report

    def expect(history: History, state: FinalState, run: Run) -> list[Verdict]:
        verdicts: list[Verdict] = []
        for size, plan in zip(sizes, plans(run), strict=True):
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
            ]
        return verdicts

    def validity(run: Run) -> list[Verdict]:
        return [
            stampede_collided(
                run.history, size, phase=f"size-{size}", name=f"stampede_collided_{size}"
            )
            for size in sizes
        ]

    def summary(run: Run) -> dict[str, Any]:
        return {
            "by_size": by_size,
            "latency_by_size": {k: v["latency"] for k, v in by_size.items()},
            "start_spread_ms_by_size": {k: v["start_spread_ms"] for k, v in by_size.items()},
            "peak_in_flight_by_size": {k: v["peak_in_flight"] for k, v in by_size.items()},
            "overlap_with_winner_by_size": {
                k: v["overlap_with_winner"] for k, v in by_size.items()
            },
            "throughput_by_size": {k: v["throughput_ops_s"] for k, v in by_size.items()},
        }

    return run_pipeline(
        spec,
        Workload(
            make_plan=make_plan,
            expect=expect,
            drive=drive,
            validity=validity,
            summary=summary,
        ),
    )
