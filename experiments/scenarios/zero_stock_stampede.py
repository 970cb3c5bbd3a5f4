"""zero_stock_stampede: stock 1, 100 users claim at once; exactly one wins."""

from __future__ import annotations

from typing import Any

from experiments.scenarios._shapes import SHAPE_CHECKS, STAMPEDE_RANGES, stampede

NAME = "zero_stock_stampede"
TITLE = "Zero-stock stampede"
DESCRIPTION = (
    "One coupon with stock 1; 100 users claim it, released together by a barrier. "
    "Expected: 1 success, 99 out of stock, nothing else; remaining 0; 1 claim row."
)
DEFAULTS: dict[str, Any] = {"stock": 1, "users": 100}
RANGES, CHECKS, run = STAMPEDE_RANGES, SHAPE_CHECKS, stampede
