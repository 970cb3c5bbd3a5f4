"""constraint_storm: one user claims one coupon 50 times at once; the constraint holds."""

from __future__ import annotations

from typing import Any

from experiments.result import Result
from experiments.scenarios._shapes import one_user

NAME = "constraint_storm"
TITLE = "Constraint storm"
DESCRIPTION = (
    "One coupon with stock 100; one user sends 50 claims at once. Expected: 1 success, "
    "49 already claimed (409), no driver text; 1 claim row; remaining 99."
)
DEFAULTS: dict[str, Any] = {"stock": 100, "requests": 50}


def run(*, stock: int = 100, requests: int = 50, **common: Any) -> Result:
    """Common parameters (seed, layer, strategy, database_url, timeouts) in ``common``."""
    return one_user(NAME, stock=stock, requests=requests, **common)
