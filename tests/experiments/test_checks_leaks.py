"""The leak check finds what a run left behind, and passes when nothing was."""

from __future__ import annotations

import threading

from coupon_core import CouponService, ServiceConfig
from experiments.checks_leaks import ThreadBaseline, check_leaks, pool_idle


def test_a_left_thread_and_a_busy_pool_fail_the_check() -> None:
    baseline = ThreadBaseline()
    stop = threading.Event()
    t = threading.Thread(target=stop.wait, args=(10,), name="stray-worker")
    t.start()
    try:
        v = check_leaks(
            baseline,
            pool_stats={"pool_size": 4, "pool_available": 3, "requests_waiting": 0},
            timeout_s=0.2,
        )
    finally:
        stop.set()
        t.join()
    assert v.passed is False
    assert "stray-worker" in v.detail
    assert "1 in use" in v.detail
    assert check_leaks(baseline, timeout_s=0.2).passed is True


def test_open_service_backends_fail_the_check(db_url: str, unique: str) -> None:
    app = f"svc-{unique}"
    baseline = ThreadBaseline()
    svc = CouponService.connect(db_url, ServiceConfig(pool_min=2, application_name=app))
    svc.pool.wait(timeout=10)
    stats = svc.pool_stats()
    assert pool_idle(stats)
    v = check_leaks(
        baseline, db_url=db_url, application_name=app, ignore_threads=["pool"], timeout_s=0.2
    )
    assert v.passed is False
    assert v.figures["backends_left"] == 2
    svc.close()
    v = check_leaks(baseline, pool_stats=stats, db_url=db_url, application_name=app)
    assert v.passed is True, v.detail
