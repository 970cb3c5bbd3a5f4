"""constraint_storm: one user claims one coupon 50 times at once; the constraint holds."""

from __future__ import annotations

from typing import Any

from experiments.scenarios._shapes import ONE_USER_RANGES, SHAPE_CHECKS, one_user

NAME = "constraint_storm"
TITLE = "Constraint storm"
DESCRIPTION = (
    "One coupon with stock 100; one user sends 50 claims at once. Expected: 1 success, "
    "49 already claimed (409), no driver text; 1 claim row; remaining 99."
)
DEFAULTS: dict[str, Any] = {"stock": 100, "requests": 50}
RANGES, CHECKS, run = ONE_USER_RANGES, SHAPE_CHECKS, one_user
