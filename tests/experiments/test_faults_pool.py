"""Pool exhaustion on a real service: callers fail fast and cleanly, then it serves again."""

from __future__ import annotations

import time

import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.errors import Unavailable
from experiments.checks_leaks import ThreadBaseline, check_leaks
from experiments.faults import PoolHog
from experiments.faults.pool import PoolWatch


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


def test_pool_watch_sees_an_exhausted_pool_and_an_idle_one(db_url: str, unique: str) -> None:
    cfg = ServiceConfig(pool_min=2, pool_max=2, pool_timeout=0.3, application_name=f"w-{unique}")
    with CouponService.connect(db_url, cfg) as svc:
        svc.pool.wait(timeout=10)
        watch = PoolWatch(svc.pool_stats, interval_s=0.005, max_duration_s=10).start()
        idle_from = time.monotonic_ns()
        time.sleep(0.1)
        idle_to = time.monotonic_ns()
        with PoolHog(svc.pool, count=2, hold_s=5) as hog:
            held_from = time.monotonic_ns()
            time.sleep(0.1)
            held_to = time.monotonic_ns()
            assert hog.held == 2
        watch.stop()
    assert len(watch.samples) >= 10
    assert watch.no_idle_during(held_from, held_to)
    assert not watch.no_idle_during(idle_from, idle_to)
