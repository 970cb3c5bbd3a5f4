"""flash_sale: stock 5, 50 users claim at once; exactly five win."""

from __future__ import annotations

from typing import Any

from experiments.scenarios._shapes import SHAPE_CHECKS, STAMPEDE_RANGES, stampede

NAME = "flash_sale"
TITLE = "Flash sale"
DESCRIPTION = (
    "One coupon with stock 5; 50 users claim it, released together by a barrier. "
    "Expected: 5 successes, 45 out of stock, nothing else; remaining 0; 5 claim rows."
)
DEFAULTS: dict[str, Any] = {"stock": 5, "users": 50}
RANGES, CHECKS, run = STAMPEDE_RANGES, SHAPE_CHECKS, stampede
