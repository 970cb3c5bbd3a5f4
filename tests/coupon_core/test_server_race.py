"""PostgreSQL's multixact race (XX000) is a refusal: rolled back, 503, never a 500.

The race itself (an updater that aborted, still in the ProcArray, kept in a new
multixact beside the claim's own update) cannot be timed from a test; the error it
raises can: a real PostgreSQL raises XX000 with the same text inside a claim's
transaction, after its insert, where the decrement fails in the race.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.errors import InternalError, Unavailable
from coupon_core.strategies import STRATEGIES, FaultHook, register_strategy

#: As PostgreSQL 18.6 wrote it under connection_drop (issue 26, serializable, seed 3).
RACE = (
    "new multixact has more than one updating member: "
    "0 3[48168 (nokeyupd), 48172 (keysh), 48172 (nokeyupd)]"
)


@dataclass(frozen=True)
class _FailingDecrement:
    """Inserts the claim, then its decrement fails with XX000 and ``message``."""

    name: str
    message: str

    def claim(
        self,
        conn: psycopg.Connection[tuple[object, ...]],
        user_id: str,
        coupon_name: str,
        fault: FaultHook | None,
    ) -> None:
        with conn.transaction():
            conn.execute(
                "INSERT INTO claims (user_id, coupon_name) VALUES (%s, %s)", (user_id, coupon_name)
            )
            conn.execute(
                f"DO $$ BEGIN RAISE EXCEPTION '{self.message}' USING ERRCODE = 'XX000'; END $$"
            )


def _service(db_url: str, message: str) -> Iterator[CouponService]:
    strategy = _FailingDecrement(f"test:xx000-{abs(hash(message)):x}", message)
    register_strategy(strategy)
    svc = CouponService.connect(db_url, ServiceConfig(strategy=strategy.name))
    try:
        yield svc
    finally:
        svc.close()
        del STRATEGIES[strategy.name]


@pytest.fixture
def raced(db_url: str) -> Iterator[CouponService]:
    yield from _service(db_url, RACE)


@pytest.fixture
def broken(db_url: str) -> Iterator[CouponService]:
    yield from _service(db_url, "could not read block 7 in file base/5/16384")


def test_the_multixact_race_is_a_refusal_and_leaves_nothing(
    raced: CouponService, unique: str
) -> None:
    # Before: every XX000 became InternalError, a 500 (connection_drop failed
    # statuses_allowed, no_server_errors and claim_results on it).
    raced.create(unique, 5)
    with pytest.raises(Unavailable) as caught:
        raced.claim("u1", unique)
    assert isinstance(caught.value.__cause__, psycopg.errors.InternalError_)
    assert str(caught.value) == "service unavailable: the database refused a concurrent update"
    # Rolled back: the insert before the failing statement did not stay.
    view = raced.get(unique)
    assert (view.remaining_amount, view.claimed_by) == (5, [])
    # The database answered: the breaker counts no failure, the service goes on serving.
    assert raced.health() == (True, "ok")


def test_any_other_internal_error_is_still_a_server_error(
    broken: CouponService, unique: str
) -> None:
    broken.create(unique, 5)
    with pytest.raises(InternalError):
        broken.claim("u1", unique)
    view = broken.get(unique)
    assert (view.remaining_amount, view.claimed_by) == (5, [])
