"""The service against a real PostgreSQL: every error path, every input rule at its boundary."""

from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import psycopg_pool
import pytest
from psycopg import errors as pg_errors

from coupon_core import (
    AlreadyClaimed,
    CouponExists,
    CouponNotFound,
    CouponService,
    InvalidRequest,
    NoStock,
    ServiceConfig,
    Unavailable,
    apply_schema,
)
from coupon_core.database import free_port
from coupon_core.strategies import ClaimConnection

MAX = 2_147_483_647


def snapshot(url: str) -> tuple[int, int, int]:
    """Rows and stock across the whole database: what a rejected call must not change."""
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM coupons), (SELECT count(*) FROM claims),"
            " (SELECT coalesce(sum(remaining_amount), 0) FROM coupons)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def test_create_and_get(service: CouponService, unique: str) -> None:
    service.create(f"{unique}-a", 7)
    view = service.get(f"{unique}-a")
    assert view.to_dict() == {
        "name": f"{unique}-a",
        "amount": 7,
        "remaining_amount": 7,
        "claimed_by": [],
    }


def test_claimed_by_is_in_claim_order(service: CouponService, unique: str) -> None:
    name = f"{unique}-order"
    service.create(name, 10)
    # Not alphabetical, so a sort by user id would show.
    users = ["zed", "amy", "mo", "bo"]
    for user in users:
        service.claim(user, name)
    view = service.get(name)
    assert view.claimed_by == users
    assert view.remaining_amount == 6


def test_create_twice_is_coupon_exists_chained_to_driver(
    service: CouponService, unique: str
) -> None:
    service.create(f"{unique}-dup", 3)
    with pytest.raises(CouponExists) as info:
        service.create(f"{unique}-dup", 5)
    assert str(info.value) == "coupon already exists"
    assert isinstance(info.value.__cause__, pg_errors.UniqueViolation)
    # The driver's words stay in the cause, out of the public text.
    assert str(info.value.__cause__) not in str(info.value)
    assert service.get(f"{unique}-dup").amount == 3


def test_not_found(service: CouponService, unique: str) -> None:
    with pytest.raises(CouponNotFound, match=r"^coupon not found$"):
        service.get(f"{unique}-missing")
    with pytest.raises(CouponNotFound, match=r"^coupon not found$"):
        service.claim("u1", f"{unique}-missing")


def test_get_never_validates(service: CouponService) -> None:
    # Names no coupon can have are simply not found, never invalid.
    for name in ["x" * 10_000, "a\x00b", "", "\ud800"]:
        with pytest.raises(CouponNotFound):
            service.get(name)


def test_already_claimed_and_no_stock(service: CouponService, unique: str) -> None:
    name = f"{unique}-one"
    service.create(name, 1)
    service.claim("u1", name)
    with pytest.raises(AlreadyClaimed, match=r"^coupon already claimed by user$"):
        service.claim("u1", name)
    with pytest.raises(NoStock, match=r"^coupon out of stock$"):
        service.claim("u2", name)
    view = service.get(name)
    assert (view.remaining_amount, view.claimed_by) == (0, ["u1"])


def test_already_claimed_comes_before_no_stock(service: CouponService, unique: str) -> None:
    # The contract's check order: exists, then claimed before, then stock.
    name = f"{unique}-order2"
    service.create(name, 1)
    service.claim("u1", name)
    with pytest.raises(AlreadyClaimed):
        service.claim("u1", name)


def test_boundaries_accepted(service: CouponService, unique: str) -> None:
    long_name = (unique + "x" * 255)[:255]
    service.create(long_name, 1)
    service.create(f"{unique}-max", MAX)
    assert service.get(long_name).amount == 1
    assert service.get(f"{unique}-max").remaining_amount == MAX
    long_user = "u" * 255
    service.claim(long_user, long_name)
    assert service.get(long_name).claimed_by == [long_user]


CREATE_REJECTS: list[tuple[object, object, str]] = [
    ("N" * 256, 1, "invalid request: name must be at most 255 characters"),
    ("", 1, "invalid request: name must not be blank"),
    ("   \t\n", 1, "invalid request: name must not be blank"),
    ("a\x00b", 1, "invalid request: name must not contain NUL characters"),
    ("\ud800", 1, "invalid request: name must be valid Unicode text"),
    (5, 1, "invalid request: name must be a string"),
    (None, 1, "invalid request: name is required"),
    ("ok", 0, "invalid request: amount must be between 1 and 2147483647"),
    ("ok", -1, "invalid request: amount must be between 1 and 2147483647"),
    ("ok", MAX + 1, "invalid request: amount must be between 1 and 2147483647"),
    ("ok", 1.0, "invalid request: amount must be an integer"),
    ("ok", "5", "invalid request: amount must be an integer"),
    ("ok", True, "invalid request: amount must be an integer"),
    ("ok", None, "invalid request: amount is required"),
]


@pytest.mark.parametrize(("name", "amount", "message"), CREATE_REJECTS)
def test_create_rejects(
    service: CouponService, db_url: str, name: object, amount: object, message: str
) -> None:
    before = snapshot(db_url)
    with pytest.raises(InvalidRequest) as info:
        service.create(name, amount)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert snapshot(db_url) == before


CLAIM_REJECTS: list[tuple[object, object, str]] = [
    (None, "c", "invalid request: user_id is required"),
    ("u", None, "invalid request: coupon_name is required"),
    ("U" * 256, "c", "invalid request: user_id must be at most 255 characters"),
    ("u", "C" * 256, "invalid request: coupon_name must be at most 255 characters"),
    (" ", "c", "invalid request: user_id must not be blank"),
    ("u", "", "invalid request: coupon_name must not be blank"),
    ("u\x00", "c", "invalid request: user_id must not contain NUL characters"),
    (7, "c", "invalid request: user_id must be a string"),
    ("u", ["c"], "invalid request: coupon_name must be a string"),
]


@pytest.mark.parametrize(("user", "coupon", "message"), CLAIM_REJECTS)
def test_claim_rejects(
    service: CouponService,
    db_url: str,
    unique: str,
    user: object,
    coupon: object,
    message: str,
) -> None:
    service.create(f"{unique}-c", 5)
    coupon = f"{unique}-c" if coupon == "c" else coupon
    before = snapshot(db_url)
    with pytest.raises(InvalidRequest) as info:
        service.claim(user, coupon)  # type: ignore[arg-type]
    assert str(info.value) == message
    assert snapshot(db_url) == before
    assert service.get(f"{unique}-c").remaining_amount == 5


def test_rows_inserted_by_plain_sql_are_served(
    service: CouponService, db_url: str, unique: str
) -> None:
    name = f"{unique}-outside"
    with psycopg.connect(db_url) as conn:
        conn.execute(
            "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, %s, %s)",
            (name, 3, 2),
        )
        conn.execute("INSERT INTO claims (user_id, coupon_name) VALUES (%s, %s)", ("early", name))
    service.claim("late", name)
    view = service.get(name)
    assert (view.amount, view.remaining_amount, view.claimed_by) == (3, 1, ["early", "late"])
    with pytest.raises(AlreadyClaimed):
        service.claim("early", name)


def test_schema_applied_twice_is_fine(service: CouponService, db_url: str, unique: str) -> None:
    service.create(f"{unique}-keep", 2)
    apply_schema(db_url)
    apply_schema(db_url)
    # Nothing dropped or duplicated: the row survives, the indexes exist once.
    assert service.get(f"{unique}-keep").amount == 2
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT indexname FROM pg_indexes WHERE tablename = 'claims' ORDER BY indexname"
        ).fetchall()
    names = [r[0] for r in rows]
    assert "idx_claims_coupon_name" in names
    assert "idx_claims_user_id" in names


def _dead_url() -> str:
    return f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"


def test_connect_to_dead_database_is_unavailable_without_driver_text() -> None:
    with pytest.raises(Unavailable) as info:
        CouponService.connect(_dead_url(), connect_timeout=1)
    assert isinstance(info.value.__cause__, psycopg.OperationalError)
    assert str(info.value) == "service unavailable: cannot reach the database"
    assert "127.0.0.1" not in str(info.value)


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.claim("u", "c"),
        lambda s: s.create("c", 1),
        lambda s: s.get("c"),
    ],
    ids=["claim", "create", "get"],
)
def test_calls_on_dead_database_are_unavailable_within_pool_timeout(
    call: Callable[[CouponService], object],
) -> None:
    svc = CouponService.connect(
        _dead_url(), apply_schema=False, pool_min=0, pool_max=2, pool_timeout=0.5
    )
    try:
        start = time.monotonic()
        with pytest.raises(Unavailable) as info:
            call(svc)
        assert time.monotonic() - start < 3.0
        assert isinstance(info.value.__cause__, psycopg_pool.PoolTimeout)
        assert str(info.value) == "service unavailable"
        ok, reason = svc.health()
        assert (ok, reason) == (False, "database unavailable")
    finally:
        svc.close()


def test_an_exhausted_pool_is_no_news_to_the_breaker(db_url: str, unique: str) -> None:
    """Pool timeouts on a healthy database leave the breaker closed and unsuspecting:
    ``PoolTimeout`` is an ``OperationalError``, but no connection failed."""
    cfg = ServiceConfig(pool_min=2, pool_max=2, pool_timeout=0.1, application_name=f"b-{unique}")
    with CouponService.connect(db_url, cfg) as svc:
        svc.create(f"{unique}-c", 5)
        assert svc.breaker is not None
        held = [svc.pool.getconn(timeout=10) for _ in range(2)]
        try:
            for user in ("u1", "u2", "u3"):  # past the threshold of 2
                with pytest.raises(Unavailable) as info:
                    svc.claim(user, f"{unique}-c")
                assert isinstance(info.value.__cause__, psycopg_pool.PoolTimeout)
                assert svc.breaker.suspect is False
        finally:
            for conn in held:
                svc.pool.putconn(conn)
        assert svc.breaker.state == "closed"
        assert svc.breaker.opened == 0
        svc.claim("u1", f"{unique}-c")


def test_health_ok(service: CouponService) -> None:
    assert service.health() == (True, "ok")


@pytest.mark.parametrize(
    "strategy", ["row_lock", "atomic", "serializable", "advisory", "row_lock_pipelined"]
)
def test_claims_keep_one_cursor_per_connection_even_after_an_error(
    db_url: str, unique: str, strategy: str
) -> None:
    config = ServiceConfig(strategy=strategy, pool_min=1, pool_max=1)
    with CouponService.connect(db_url, config) as svc:
        svc.create(unique, 3)
        svc.claim("a", unique)
        with svc.pool.connection() as conn:
            assert isinstance(conn, ClaimConnection)
            kept = conn.claim_cursor()
            with pytest.raises(pg_errors.DivisionByZero):
                kept.execute("SELECT 1 / 0")  # the kept cursor has seen an error
        with pytest.raises(AlreadyClaimed):
            svc.claim("a", unique)
        svc.claim("b", unique)
        with svc.pool.connection() as conn:
            assert isinstance(conn, ClaimConnection)
            assert conn.claim_cursor() is kept
        view = svc.get(unique)
    assert (view.remaining_amount, view.claimed_by) == (1, ["a", "b"])
