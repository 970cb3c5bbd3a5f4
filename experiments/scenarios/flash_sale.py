"""flash_sale: stock 5, 50 users claim at once; exactly five win."""

from __future__ import annotations

from typing import Any

from experiments.checks import Shared
from experiments.result import Result
from experiments.scenarios._shapes import STAMPEDE_RANGES, stampede
from experiments.spec import RunSpec

NAME = "flash_sale"
TITLE = "Flash sale"
DESCRIPTION = (
    "One coupon with stock 5; 50 users claim it, released together by a barrier. "
    "Expected: 5 successes, 45 out of stock, nothing else; remaining 0; 5 claim rows."
)
DEFAULTS: dict[str, Any] = {"stock": 5, "users": 50}
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
