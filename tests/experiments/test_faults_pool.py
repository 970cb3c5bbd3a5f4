"""Pool exhaustion on a real service: callers fail fast and cleanly, then it serves again."""

from __future__ import annotations

import time

import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.errors import Unavailable
from experiments.faults import PoolHog, ThreadBaseline, check_leaks


def test_all_connections_held_means_unavailable_within_the_pool_timeout(
    db_url: str, unique: str
) -> None:
    coupon = f"{unique}-c"
    baseline = ThreadBaseline()
    cfg = ServiceConfig(pool_min=2, pool_max=3, pool_timeout=0.3, application_name=f"svc-{unique}")
    svc = CouponService.connect(db_url, cfg)
    svc.create(coupon, 5)
    with PoolHog(svc.pool, count=3, hold_s=5) as hog:
        assert hog.held == 3
        stats = svc.pool_stats()
        assert stats.get("pool_available", 0) == 0
        t0 = time.monotonic()
        with pytest.raises(Unavailable):
            svc.claim("u", coupon)
        took = time.monotonic() - t0
    assert 0.25 <= took <= 1.5, took
    svc.claim("u", coupon)  # released: serves again
    assert svc.get(coupon).remaining_amount == 4
    stats = svc.pool_stats()
    svc.close()
    verdict = check_leaks(
        baseline, pool_stats=stats, db_url=db_url, application_name=f"svc-{unique}"
    )
    assert verdict.passed is True, verdict.detail
