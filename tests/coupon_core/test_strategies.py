"""Every claim strategy under a real stampede: threads released together by a barrier."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator

import psycopg
import pytest

from coupon_core import CouponError, CouponService, available_strategies

WAIT_S = 60.0


@pytest.fixture(params=available_strategies())
def strategy_service(request: pytest.FixtureRequest, db_url: str) -> Iterator[CouponService]:
    svc = CouponService.connect(db_url, strategy=request.param, pool_max=20, pool_timeout=20)
    try:
        yield svc
    finally:
        svc.close()


def stampede(n: int, call: Callable[[int], None]) -> Counter[str]:
    """Run ``call(i)`` in ``n`` threads released at once; count outcomes by error kind."""
    barrier = threading.Barrier(n, timeout=WAIT_S)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        try:
            call(i)
            kind = "ok"
        except CouponError as err:
            kind = err.kind
        except Exception as err:  # recorded, so the assertion shows what escaped
            kind = f"unexpected {type(err).__name__}: {err}"
        with lock:
            outcomes.append(kind)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT_S)
    assert not any(t.is_alive() for t in threads), "a claim thread did not finish"
    return Counter(outcomes)


def conservation(url: str, prefix: str) -> list[tuple[str, int, int, int]]:
    """Coupons of ``prefix`` where amount != remaining_amount + claims (should be none)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.name, c.amount, c.remaining_amount,"
            " (SELECT count(*) FROM claims WHERE coupon_name = c.name)::int"
            " FROM coupons c WHERE c.name LIKE %s",
            (prefix + "%",),
        ).fetchall()
    assert rows, "no coupons found for the prefix"
    return [(n, a, r, c) for n, a, r, c in rows if a != r + c]


def claim_rows(url: str, name: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT user_id FROM claims WHERE coupon_name = %s ORDER BY id", (name,)
        ).fetchall()
    return [r[0] for r in rows]


def test_zero_stock_stampede(strategy_service: CouponService, db_url: str, unique: str) -> None:
    name = f"{unique}-last"
    strategy_service.create(name, 1)
    outcomes = stampede(100, lambda i: strategy_service.claim(f"user-{i}", name))
    assert outcomes == Counter({"ok": 1, "no_stock": 99})
    assert strategy_service.get(name).remaining_amount == 0
    assert len(claim_rows(db_url, name)) == 1
    assert conservation(db_url, unique) == []


def test_one_user_stampede(strategy_service: CouponService, db_url: str, unique: str) -> None:
    name = f"{unique}-storm"
    strategy_service.create(name, 100)
    outcomes = stampede(50, lambda i: strategy_service.claim("the-user", name))
    assert outcomes == Counter({"ok": 1, "already_claimed": 49})
    assert strategy_service.get(name).remaining_amount == 99
    assert claim_rows(db_url, name) == ["the-user"]
    assert conservation(db_url, unique) == []


def test_flash_sale(strategy_service: CouponService, db_url: str, unique: str) -> None:
    name = f"{unique}-flash"
    strategy_service.create(name, 5)
    outcomes = stampede(50, lambda i: strategy_service.claim(f"user-{i}", name))
    assert outcomes == Counter({"ok": 5, "no_stock": 45})
    view = strategy_service.get(name)
    assert view.remaining_amount == 0
    assert sorted(view.claimed_by) == sorted(claim_rows(db_url, name))
    assert conservation(db_url, unique) == []


def test_strategy_names() -> None:
    assert available_strategies() == ["advisory", "atomic", "row_lock", "serializable"]


def test_serializable_counts_a_retry_after_a_concurrent_update(db_url: str, unique: str) -> None:
    # Deterministic: another transaction updates the coupon row (uncommitted) while the
    # claim's first attempt runs; the claim's UPDATE waits for it, and once it commits
    # SERIALIZABLE must fail that attempt (40001). The retry then succeeds.
    from coupon_core import get_strategy

    coupon = f"{unique}-ser"
    counter = get_strategy("serializable").retries  # type: ignore[attr-defined]
    svc = CouponService.connect(
        db_url, strategy="serializable", application_name=f"ser-{unique}", pool_max=2
    )
    other = psycopg.connect(db_url)
    try:
        svc.create(coupon, 5)
        before = counter.value
        other.execute(
            "UPDATE coupons SET remaining_amount = remaining_amount WHERE name = %s", (coupon,)
        )
        errors: list[BaseException] = []

        def claim() -> None:
            try:
                svc.claim("u1", coupon)
            except BaseException as err:
                errors.append(err)

        t = threading.Thread(target=claim, daemon=True)
        t.start()
        with psycopg.connect(db_url, autocommit=True) as watch:
            deadline = time.monotonic() + WAIT_S
            while not watch.execute(
                "SELECT 1 FROM pg_stat_activity WHERE application_name = %s"
                " AND wait_event_type = 'Lock'",
                (f"ser-{unique}",),
            ).fetchone():
                assert time.monotonic() < deadline, "the claim never waited on the row"
                time.sleep(0.01)
        other.commit()
        t.join(WAIT_S)
        assert not t.is_alive()
        assert errors == []
        assert counter.value - before == 1
        assert svc.get(coupon).claimed_by == ["u1"]
    finally:
        other.close()
        svc.close()
