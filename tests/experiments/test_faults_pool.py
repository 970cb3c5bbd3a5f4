"""Pool exhaustion on a real service: callers fail fast and cleanly, then it serves again."""

from __future__ import annotations

import time

import psycopg_pool
import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.errors import Unavailable
from experiments.checks_leaks import ThreadBaseline, check_leaks
from experiments.faults import PoolHog
from experiments.faults.pool import PoolRefusals, PoolWatch, Refusal, judge_refusals
from experiments.history import Op


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


def _refused_claim(svc: CouponService, coupon: str, user: str) -> Op:
    op = Op(op_id=1, worker=0, kind="claim", coupon=coupon, user=user)
    op.invoke_ns = time.monotonic_ns()
    with pytest.raises(Unavailable):
        svc.claim(user, coupon)
    op.complete_ns = time.monotonic_ns()
    op.result = "unavailable"
    return op


def test_a_refusal_of_an_exhausted_pool_is_sound(db_url: str, unique: str) -> None:
    cfg = ServiceConfig(pool_min=2, pool_max=2, pool_timeout=0.2, application_name=f"r-{unique}")
    with CouponService.connect(db_url, cfg) as svc:
        svc.create(f"{unique}-c", 5)
        refusals = PoolRefusals(svc.pool).start()
        try:
            with PoolHog(svc.pool, count=2, hold_s=5):
                op = _refused_claim(svc, f"{unique}-c", "u")
        finally:
            refusals.stop()
    assert len(refusals.refusals) == 1
    refusal = refusals.refusals[0]
    assert refusal.at_refusal["available"] == 0
    assert refusal.at_refusal["in_use"] == 2
    assert refusal.waited_s >= 0.19
    verdict = judge_refusals([op], refusals.refusals)
    assert verdict.passed is True, verdict.detail


def test_a_pool_refusing_with_idle_connections_fails_the_check(db_url: str, unique: str) -> None:
    """A planted pool bug: getconn refuses at once while every connection sits idle."""
    cfg = ServiceConfig(pool_min=2, pool_max=2, pool_timeout=0.2, application_name=f"l-{unique}")
    with CouponService.connect(db_url, cfg) as svc:
        svc.create(f"{unique}-c", 5)
        svc.pool.wait(timeout=10)

        def lying_getconn(timeout: float | None = None) -> object:
            raise psycopg_pool.PoolTimeout("no connection (a lie)")

        svc.pool.getconn = lying_getconn  # type: ignore[method-assign]
        refusals = PoolRefusals(svc.pool).start()
        try:
            op = _refused_claim(svc, f"{unique}-c", "u")
        finally:
            refusals.stop()
        assert "getconn" not in vars(svc.pool)  # stop() gives the pool its own method back
        svc.claim("u", f"{unique}-c")
    assert refusals.refusals[0].at_refusal["available"] == 2
    verdict = judge_refusals([op], refusals.refusals)
    assert verdict.passed is False
    assert "idle" in verdict.detail
    assert verdict.figures["stray"] == 1


def test_an_unavailable_without_a_pool_refusal_is_a_stray() -> None:
    op = Op(op_id=7, worker=0, kind="claim", coupon="c", user="u", result="unavailable")
    op.invoke_ns, op.complete_ns = 1_000, 2_000
    verdict = judge_refusals([op], [])
    assert verdict.passed is False
    assert "without a pool refusal" in verdict.detail


def _sound_refusal(wait_start_ms: int, refused_ms: int) -> Refusal:
    exhausted = {"pool_size": 4, "available": 0, "in_use": 4, "waiting": 30}
    return Refusal(
        wait_start_ms * 1_000_000, refused_ms * 1_000_000, 0.25, 0.25, exhausted, exhausted
    )


def _unavailable(op_id: int, invoke_ms: int, complete_ms: int) -> Op:
    op = Op(op_id=op_id, worker=op_id, kind="claim", coupon="c", user="u", result="unavailable")
    op.invoke_ns, op.complete_ns = invoke_ms * 1_000_000, complete_ms * 1_000_000
    return op


def test_each_op_gets_a_refusal_inside_it_whatever_order_they_reached_the_pool() -> None:
    """Over HTTP, op 2 (invoked later) reached the pool first: its refusal also lies
    inside op 1, the first refusal that fits op 1. Taken by op 1, it would leave op 2
    none (op 1's own ends after op 2 completes); a matching gives each its own."""
    op1, op2 = _unavailable(1, 0, 300), _unavailable(2, 10, 290)
    own1, own2 = _sound_refusal(30, 298), _sound_refusal(15, 285)
    verdict = judge_refusals([op1, op2], [own1, own2])
    assert verdict.passed is True, verdict.detail
    assert verdict.figures["sound"] == 2
    # Still one refusal per op: two ops cannot share the one refusal inside both.
    verdict = judge_refusals([op1, op2], [own2])
    assert verdict.passed is False
    assert verdict.figures["stray"] == 1
    assert "without a pool refusal" in verdict.detail


def test_a_slice_of_a_wait_is_not_a_refusal_after_the_full_timeout(
    db_url: str, unique: str
) -> None:
    """A 20 ms request to a pool whose timeout is 0.2 s (the service's sliced wait while
    its breaker suspects the database) waits out its own timeout, not the caller's."""
    cfg = ServiceConfig(pool_min=2, pool_max=2, pool_timeout=0.2, application_name=f"s-{unique}")
    with CouponService.connect(db_url, cfg) as svc:
        refusals = PoolRefusals(svc.pool).start()
        try:
            with PoolHog(svc.pool, count=2, hold_s=5):
                op = Op(op_id=1, worker=0, kind="claim", coupon="c", user="u")
                op.invoke_ns = time.monotonic_ns()
                with pytest.raises(psycopg_pool.PoolTimeout):
                    svc.pool.getconn(0.02)
                op.complete_ns = time.monotonic_ns()
                op.result = "unavailable"
        finally:
            refusals.stop()
    (refusal,) = refusals.refusals
    assert refusal.at_refusal["available"] == 0
    assert (refusal.timeout_s, refusal.pool_timeout_s) == (0.02, 0.2)
    verdict = judge_refusals([op], refusals.refusals)
    assert verdict.passed is False
    assert "sliced" in verdict.detail
