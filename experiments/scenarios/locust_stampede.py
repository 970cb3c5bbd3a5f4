"""locust_stampede: the zero-stock stampede driven by a Locust master and worker processes."""

from __future__ import annotations

from typing import Any

from experiments.result import Result

NAME = "locust_stampede"
TITLE = "Stampede from Locust workers"
DESCRIPTION = (
    "One coupon with stock 1; 100 users spread over 2 Locust worker processes, released "
    "by the master at one agreed instant, over HTTP against the lab's server. Histories "
    "merged on the master's clock, each op widened by its worker's clock uncertainty. "
    "Expected: 1 success, 99 out of stock; remaining 0; a linearizable merged history."
)
DEFAULTS: dict[str, Any] = {"stock": 1, "users": 100, "processes": 2}


def run(
    *,
    stock: int = 1,
    users: int = 100,
    processes: int = 2,
    layer: str = "http",
    **common: Any,
) -> Result:
    """Common parameters in ``common``; Locust always drives HTTP, whatever ``layer`` says."""
    from experiments.locust import run_locust

    return run_locust(
        "zero_stock_stampede",
        name=NAME,
        processes=processes,
        stock=stock,
        users=users,
        **common,
    )
