"""double_dip: one user claims one coupon 10 times at once; one claim lands."""

from __future__ import annotations

from typing import Any

from experiments.result import Result
from experiments.scenarios._shapes import one_user

NAME = "double_dip"
TITLE = "Double dip"
DESCRIPTION = (
    "One coupon with stock 100; one user sends 10 claims at once. Expected: 1 success, "
    "9 already claimed (409); 1 claim row; remaining 99."
)
DEFAULTS: dict[str, Any] = {"stock": 100, "requests": 10}


def run(*, stock: int = 100, requests: int = 10, **common: Any) -> Result:
    """Common parameters (seed, layer, strategy, database_url, timeouts) in ``common``."""
    return one_user(NAME, stock=stock, requests=requests, **common)
