"""double_dip: one user claims one coupon 10 times at once; one claim lands."""

from __future__ import annotations

from typing import Any

from experiments.checks import Shared
from experiments.result import Result
from experiments.scenarios._shapes import ONE_USER_RANGES, one_user
from experiments.spec import RunSpec

NAME = "double_dip"
TITLE = "Double dip"
DESCRIPTION = (
    "One coupon with stock 100; one user sends 10 claims at once. Expected: 1 success, "
    "9 already claimed (409); 1 claim row; remaining 99."
)
DEFAULTS: dict[str, Any] = {"stock": 100, "requests": 10}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "catalog"
CHECKS: tuple[str, ...] = (
    "claim_counts",
    "final_stock",
    "claim_rows",
    "stampede_collided",
)

RANGES = ONE_USER_RANGES


def run(spec: RunSpec) -> Result:
    return one_user(spec)
