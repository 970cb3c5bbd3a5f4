"""zero_stock_stampede: stock 1, 100 users claim at once; exactly one wins."""

from __future__ import annotations

from typing import Any

from experiments.checks import Shared
from experiments.result import Result
from experiments.scenarios._shapes import STAMPEDE_RANGES, stampede
from experiments.spec import RunSpec

NAME = "zero_stock_stampede"
TITLE = "Zero-stock stampede"
DESCRIPTION = (
    "One coupon with stock 1; 100 users claim it, released together by a barrier. "
    "Expected: 1 success, 99 out of stock, nothing else; remaining 0; 1 claim row."
)
DEFAULTS: dict[str, Any] = {"stock": 1, "users": 100}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "catalog"
CHECKS: tuple[str, ...] = (
    "claim_counts",
    "final_stock",
    "claim_rows",
    "stampede_collided",
)

RANGES = STAMPEDE_RANGES


def run(spec: RunSpec) -> Result:
    return stampede(spec)
