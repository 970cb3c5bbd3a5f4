"""double_dip: one user claims one coupon 10 times at once; one claim lands."""

from __future__ import annotations

from typing import Any

from experiments.scenarios._shapes import ONE_USER_RANGES, SHAPE_CHECKS, one_user

NAME = "double_dip"
TITLE = "Double dip"
DESCRIPTION = (
    "One coupon with stock 100; one user sends 10 claims at once. Expected: 1 success, "
    "9 already claimed (409); 1 claim row; remaining 99."
)
DEFAULTS: dict[str, Any] = {"stock": 100, "requests": 10}
RANGES, CHECKS, run = ONE_USER_RANGES, SHAPE_CHECKS, one_user
