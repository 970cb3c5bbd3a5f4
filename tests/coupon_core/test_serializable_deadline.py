"""serializable's retry bound is a deadline in time, not a count of tries.

Contention is made deterministic on a real PostgreSQL: at the claim's ``after_insert``
point (the claim row inserted, the coupon's decrement not yet run) a second connection
commits an update of the coupon row. The claim's snapshot predates it, so its UPDATE
fails 40001 (could not serialize access due to concurrent update) on every try the
conflict is made, and no sooner or later.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import psycopg
import pytest

from coupon_core import CouponService, get_strategy
from coupon_core.errors import Unavailable
from coupon_core.strategies import (
    CONTENTION_BUDGET_S,
    ClaimConnection,
    Serializable,
    statement_budget_s,
)
from tests.tables import stock_and_claims


@pytest.fixture
def other(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        yield conn


def conflicting(
    other: psycopg.Connection[tuple[object, ...]], coupon: str, tries: int | None
) -> tuple[Callable[[str], None], list[int]]:
    """A fault hook that commits a conflicting update of ``coupon`` on the first ``tries``
    tries of a claim (None: on every try), and the count of tries it saw."""
    seen = [0]

    def hook(point: str) -> None:
        if point != "after_insert":
            return
        seen[0] += 1
        if tries is None or seen[0] <= tries:
            other.execute(
                "UPDATE coupons SET remaining_amount = remaining_amount WHERE name = %s",
                (coupon,),
            )

    return hook, seen


def test_contention_past_thirty_tries_but_within_the_deadline_is_claimed(
    db_url: str, unique: str, other: psycopg.Connection[tuple[object, ...]]
) -> None:
    """40 conflicting tries in a row (about 1 s of capped backoff): the 30-try bound
    refused this claim ``Unavailable`` (503); the deadline (5 s) lets it through."""
    coupon = f"{unique}-hot"
    counter = get_strategy("serializable").retries  # type: ignore[attr-defined]
    with CouponService.connect(
        db_url, strategy="serializable", application_name=f"dl-{unique}", pool_max=2
    ) as svc:
        svc.create(coupon, 5)
        svc.fault, seen = conflicting(other, coupon, tries=40)
        before = counter.value
        t0 = time.monotonic()
        svc.claim("u1", coupon)
        took = time.monotonic() - t0
    assert seen[0] == 41  # 40 tries refused, the 41st claimed
    assert counter.value - before >= 40  # the lab's retries counter still counts them
    assert took < CONTENTION_BUDGET_S
    assert stock_and_claims(other, coupon) == (4, 1)


def test_contention_past_the_statement_timeout_is_refused_within_it(
    db_url: str, unique: str, other: psycopg.Connection[tuple[object, ...]]
) -> None:
    """A service with a statement_timeout of 400 ms refuses a claim that never stops
    colliding within about that (the deadline is the shorter of the two budgets)."""
    coupon = f"{unique}-hot"
    with CouponService.connect(
        db_url,
        strategy="serializable",
        application_name=f"dl-{unique}",
        pool_max=2,
        statement_timeout_ms=400,
    ) as svc:
        svc.create(coupon, 5)
        svc.fault, seen = conflicting(other, coupon, tries=None)
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="too much contention"):
            svc.claim("u1", coupon)
        took = time.monotonic() - t0
    assert 0.3 <= took <= 0.4 + 1.0, took
    assert seen[0] > 1  # it did retry before the deadline
    assert stock_and_claims(other, coupon) == (5, 0)  # nothing of the refused claim stays


def test_contention_past_the_strategy_budget_is_refused_in_bounded_time(
    db_url: str, unique: str, other: psycopg.Connection[tuple[object, ...]]
) -> None:
    """No statement_timeout on the session: the strategy's own budget bounds the claim."""
    coupon = f"{unique}-hot"
    other.execute(
        "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, 5, 5)", (coupon,)
    )
    hook, seen = conflicting(other, coupon, tries=None)
    strategy = Serializable(budget_s=0.3)
    with ClaimConnection.connect(db_url, autocommit=True) as conn:
        assert statement_budget_s(conn) is None
        t0 = time.monotonic()
        with pytest.raises(Unavailable, match="too much contention"):
            strategy.claim(conn, "u1", coupon, hook)
        took = time.monotonic() - t0
    assert 0.2 <= took <= 0.3 + 1.0, took
    assert seen[0] > 1
    assert strategy.retries.value == seen[0] - 1  # every try but the refused last
    assert stock_and_claims(other, coupon) == (5, 0)


def test_statement_budget_is_the_sessions_statement_timeout(db_url: str) -> None:
    with ClaimConnection.connect(
        db_url, autocommit=True, options="-c statement_timeout=1500"
    ) as conn:
        assert statement_budget_s(conn) == 1.5
        conn.execute("SET statement_timeout = 0")
        assert statement_budget_s(conn) == 1.5  # read once per kept connection
    with psycopg.connect(db_url, autocommit=True) as plain:
        assert statement_budget_s(plain) is None


def refused(
    other: psycopg.Connection[tuple[object, ...]], tries: int
) -> tuple[Callable[[str], None], list[int]]:
    """A fault hook that fails the first ``tries`` tries of a claim with a serialization
    failure raised by PostgreSQL itself (on ``other``), at the claim's ``after_insert``.

    A campaign claim locks its coupon row first, so the conflicting update of
    ``conflicting`` would wait for the claim that waits for it; the server's own 40001
    raised at the same point is what a lost SSI conflict looks like to the claim."""
    seen = [0]

    def hook(point: str) -> None:
        if point != "after_insert":
            return
        seen[0] += 1
        if seen[0] <= tries:
            other.execute(
                "DO $$ BEGIN RAISE EXCEPTION 'planted conflict' USING ERRCODE = '40001'; END $$"
            )

    return hook, seen


@pytest.mark.parametrize(
    ("strategy", "claimed"), [("serializable", True), ("naive_serializable", False)]
)
def test_a_campaign_claim_retries_conflicts_by_the_same_deadline(
    db_url: str,
    unique: str,
    other: psycopg.Connection[tuple[object, ...]],
    strategy: str,
    claimed: bool,
) -> None:
    """The campaign claims retry through the same mechanism: 40 conflicting tries (past the
    30 they had) are claimed at SERIALIZABLE; ``naive_serializable`` (no retry) refuses the
    first conflict with ``Unavailable`` and changes nothing."""
    coupon = f"{unique}-camp"
    with CouponService.connect(
        db_url, campaign_strategy=strategy, application_name=f"dl-{unique}", pool_max=2
    ) as svc:
        svc.create(coupon, 5, campaign=f"{unique}-c")
        svc.fault, seen = refused(other, tries=40)
        if claimed:
            svc.claim("u1", coupon)
        else:
            with pytest.raises(Unavailable, match="too much contention"):
                svc.claim("u1", coupon)
    assert seen[0] == (41 if claimed else 1)
    assert stock_and_claims(other, coupon) == ((4, 1) if claimed else (5, 0))
