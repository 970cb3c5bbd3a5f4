"""Every claim strategy under a real stampede: threads released together by a barrier."""

from __future__ import annotations

import itertools
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg.pq import Trace, TransactionStatus

from coupon_core import CouponService, available_strategies, get_strategy
from coupon_core.errors import AlreadyClaimed, CouponNotFound
from coupon_core.strategies import ClaimConnection
from tests.procs import stampede
from tests.tables import stock_and_claims

WAIT_S = 60.0


@pytest.fixture(params=available_strategies())
def strategy_service(request: pytest.FixtureRequest, db_url: str) -> Iterator[CouponService]:
    svc = CouponService.connect(db_url, strategy=request.param, pool_max=20, pool_timeout=20)
    try:
        yield svc
    finally:
        svc.close()


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
    outcomes = stampede(100, lambda i: strategy_service.claim(f"user-{i}", name), bound_s=WAIT_S)
    assert outcomes == Counter({"ok": 1, "no_stock": 99})
    assert strategy_service.get(name).remaining_amount == 0
    assert len(claim_rows(db_url, name)) == 1
    assert conservation(db_url, unique) == []


def test_one_user_stampede(strategy_service: CouponService, db_url: str, unique: str) -> None:
    name = f"{unique}-storm"
    strategy_service.create(name, 100)
    outcomes = stampede(50, lambda i: strategy_service.claim("the-user", name), bound_s=WAIT_S)
    assert outcomes == Counter({"ok": 1, "already_claimed": 49})
    assert strategy_service.get(name).remaining_amount == 99
    assert claim_rows(db_url, name) == ["the-user"]
    assert conservation(db_url, unique) == []


def test_flash_sale(strategy_service: CouponService, db_url: str, unique: str) -> None:
    name = f"{unique}-flash"
    strategy_service.create(name, 5)
    outcomes = stampede(50, lambda i: strategy_service.claim(f"user-{i}", name), bound_s=WAIT_S)
    assert outcomes == Counter({"ok": 5, "no_stock": 45})
    view = strategy_service.get(name)
    assert view.remaining_amount == 0
    assert sorted(view.claimed_by) == sorted(claim_rows(db_url, name))
    assert conservation(db_url, unique) == []


def test_strategy_names() -> None:
    assert available_strategies() == [
        "advisory",
        "atomic",
        "row_lock",
        "row_lock_pipelined",
        "serializable",
    ]


# -- row_lock_pipelined: the failure paths of pipeline mode ------------------------------


def _new_coupon(url: str, name: str, amount: int) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, %s, %s)",
            (name, amount, amount),
        )


def test_pipelined_exception_between_insert_and_decrement_commits_nothing(
    db_url: str, unique: str
) -> None:
    # The hook runs after the INSERT has executed (a Sync went out, inside BEGIN) and
    # before the UPDATE is queued: the pipeline's exit sends another Sync. Neither may
    # commit the claim row without its decrement.
    coupon = f"{unique}-p"
    _new_coupon(db_url, coupon, 5)
    conn = ClaimConnection.connect(db_url, autocommit=True)
    seen: list[tuple[object, ...]] = []

    def fault(point: str) -> None:
        # From another session: the claim's backend holds the row lock and has inserted
        # (its RowExclusiveLock on claims), uncommitted.
        with psycopg.connect(db_url, autocommit=True) as other:
            row = other.execute(
                "SELECT"
                " EXISTS (SELECT 1 FROM pg_locks WHERE pid = %(pid)s"
                "  AND relation = 'claims'::regclass AND mode = 'RowExclusiveLock'),"
                " (SELECT count(*) FROM claims WHERE coupon_name = %(c)s)::int",
                {"pid": conn.info.backend_pid, "c": coupon},
            ).fetchone()
        assert row is not None
        seen.append(row)
        raise RuntimeError(f"a bug at {point}")

    strategy = get_strategy("row_lock_pipelined")
    try:
        with pytest.raises(RuntimeError, match="a bug at after_insert"):
            strategy.claim(conn, "u1", coupon, fault)
        assert seen == [(True, 0)]
        assert conn.info.transaction_status == TransactionStatus.IDLE
        assert stock_and_claims(db_url, coupon) == (5, 0)
        strategy.claim(conn, "u1", coupon, None)  # the connection claims again, cleanly
    finally:
        conn.close()
    assert stock_and_claims(db_url, coupon) == (4, 1)


def test_pipelined_database_error_in_the_batch_leaves_the_connection_idle(
    db_url: str, unique: str
) -> None:
    # The row lock times out: the pipeline is aborted (the ROLLBACK queued after the
    # error is skipped by the server), and the strategy rolls back after the Sync.
    coupon = f"{unique}-t"
    _new_coupon(db_url, coupon, 5)
    conn = ClaimConnection.connect(db_url, autocommit=True, options="-c lock_timeout=100")
    try:
        with psycopg.connect(db_url) as holder:
            holder.execute("SELECT 1 FROM coupons WHERE name = %s FOR UPDATE", (coupon,))
            with pytest.raises(psycopg.errors.LockNotAvailable):
                get_strategy("row_lock_pipelined").claim(conn, "u1", coupon, None)
            assert conn.info.transaction_status == TransactionStatus.IDLE
            holder.rollback()
        for kind, user, name in [
            (None, "u1", coupon),
            (AlreadyClaimed, "u1", coupon),
            (CouponNotFound, "u2", f"{unique}-none"),
        ]:
            if kind is None:
                get_strategy("row_lock_pipelined").claim(conn, user, name, None)
            else:
                with pytest.raises(kind):
                    get_strategy("row_lock_pipelined").claim(conn, user, name, None)
            assert conn.info.transaction_status == TransactionStatus.IDLE
    finally:
        conn.close()
    assert stock_and_claims(db_url, coupon) == (4, 1)


def _turns(trace: str) -> int:
    """Round trips in a libpq protocol trace: each run of client (F) messages answered
    by server (B) messages is one."""
    sides = [line.split("\t", 1)[0] for line in trace.splitlines() if line[:1] in "FB"]
    return sum(1 for a, b in itertools.pairwise(sides) if (a, b) == ("F", "B"))


def test_pipelined_uses_two_round_trips_where_row_lock_uses_six(
    db_url: str, unique: str, tmp_path: Path
) -> None:
    coupon = f"{unique}-r"
    _new_coupon(db_url, coupon, 10)
    turns: dict[str, int] = {}
    for name in ("row_lock", "row_lock_pipelined"):
        conn = ClaimConnection.connect(db_url, autocommit=True)
        log = tmp_path / f"{name}.trace"
        try:
            with log.open("w") as f:
                conn.pgconn.trace(f.fileno())
                conn.pgconn.set_trace_flags(Trace.SUPPRESS_TIMESTAMPS | Trace.REGRESS_MODE)
                get_strategy(name).claim(conn, f"user-{name}", coupon, None)
                conn.pgconn.untrace()
        finally:
            conn.close()
        turns[name] = _turns(log.read_text())
    # row_lock: BEGIN, SELECT ... FOR UPDATE, the check, INSERT, UPDATE, COMMIT.
    assert turns == {"row_lock": 6, "row_lock_pipelined": 2}
    assert stock_and_claims(db_url, coupon) == (8, 2)


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
