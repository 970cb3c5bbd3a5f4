"""locust_stampede: the zero-stock stampede driven by a Locust master and worker processes."""

from __future__ import annotations

from typing import Any

from experiments.checks import Shared
from experiments.locust import LOCUST_DEFAULTS, LOCUST_RANGES
from experiments.result import Result
from experiments.scenarios._shapes import STAMPEDE_RANGES
from experiments.spec import Range, RunSpec

NAME = "locust_stampede"
TITLE = "Stampede from Locust workers"
DESCRIPTION = (
    "One coupon with stock 1; 100 users spread over 2 Locust worker processes, released "
    "by the master at one agreed instant, over HTTP against the lab's server. Histories "
    "merged on the master's clock; ops of different worker processes widened by their "
    "clocks' measured uncertainty (at most max_clock_uncertainty_ms, past it the "
    "linearizability verdict is unknown), one process's own ops kept in their order "
    "exactly. Expected: 1 success, 99 out of stock; remaining 0; a linearizable merged "
    "history."
)
DEFAULTS: dict[str, Any] = {"stock": 1, "users": 100, "processes": 2, **LOCUST_DEFAULTS}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "catalog"
CHECKS: tuple[str, ...] = (
    "swarm_complete",
    "claim_counts",
    "final_stock",
    "claim_rows",
    "stampede_collided",
)


#: Locust always drives HTTP: asked for another layer, it runs on HTTP and says so.
LAYERS: tuple[str, ...] = ("http",)
RANGES: dict[str, Range] = {
    **STAMPEDE_RANGES,
    "processes": Range(1, 8, "Locust worker processes"),
    **LOCUST_RANGES,
}


def run(spec: RunSpec) -> Result:
    from experiments.locust import run_locust

    return run_locust(
        "zero_stock_stampede",
        name=NAME,
        processes=int(spec["processes"]),
        seed=spec.seed,
        strategy=spec.strategy,
        database_url=spec.database_url,
        target=spec.target,
        op_timeout_s=spec.op_timeout_s,
        run_timeout_s=spec.run_timeout_s,
        max_clock_uncertainty_ms=float(spec["max_clock_uncertainty_ms"]),
        stock=int(spec["stock"]),
        users=int(spec["users"]),
    )
