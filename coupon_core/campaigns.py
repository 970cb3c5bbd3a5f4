"""Campaign claim strategies: a user holds at most one coupon of a campaign, six ways.

A claim of a coupon that belongs to a campaign runs one of these (``ServiceConfig.
campaign_strategy``); a coupon in no campaign is claimed by the claim strategy as
before. Each makes the same checks, in this order: coupon exists, else
``CouponNotFound``; user has not claimed this coupon, else ``AlreadyClaimed``; user
holds no other coupon of the campaign, else ``CampaignClaimed``; stock left, else
``NoStock``; then insert and decrement in one transaction (docs/multirow.md).

The campaign rule spans rows: two claims of *different* coupons of one campaign by one
user lock different coupon rows, so the coupon row lock that keeps stock right does
not order them. Each strategy's answer to that:

``naive_rc``            check-then-insert at READ COMMITTED: allows write skew (G2-item)
``naive_rr``            the same at REPEATABLE READ: still allows write skew
``naive_serializable``  the same at SERIALIZABLE, no retry: safe, a conflict is a 503
``serializable``        SERIALIZABLE with bounded retries on 40001 / 40P01: safe
``lock``                a transaction-scoped advisory lock on (campaign, user): safe
``constraint``          the database decides: a row in ``campaign_claims`` whose
                        PRIMARY KEY (campaign, user_id) refuses the second (recommended)
"""

from __future__ import annotations

import json
import random
import time
from dataclasses import dataclass, field
from typing import Literal, Protocol

from psycopg import errors as pg_errors

from coupon_core.errors import (
    AlreadyClaimed,
    CampaignClaimed,
    CouponNotFound,
    NoStock,
    Unavailable,
)
from coupon_core.strategies import Conn, Cursor, FaultHook, RetryCount, _cursor

__all__ = [
    "CAMPAIGN_STRATEGIES",
    "CampaignStrategy",
    "available_campaign_strategies",
    "get_campaign_strategy",
]

Isolation = Literal["READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]

# The coupon row is locked first in every strategy: it keeps the stock right (as
# ``row_lock`` does) and makes a second claim of the *same* coupon wait, so only the
# campaign rule, which spans coupons, is left to each strategy.
_LOCK_COUPON = "SELECT remaining_amount, campaign FROM coupons WHERE name = %s FOR UPDATE"
_HAS_CLAIMED = "SELECT 1 FROM claims WHERE user_id = %s AND coupon_name = %s"
# Any claim by this user of a coupon of this campaign: the read the write skew is about.
_HOLDS_CAMPAIGN = (
    "SELECT 1 FROM claims cl JOIN coupons c ON c.name = cl.coupon_name"
    " WHERE cl.user_id = %s AND c.campaign = %s LIMIT 1"
)
_INSERT_CLAIM = "INSERT INTO claims (user_id, coupon_name) VALUES (%s, %s)"
_DECREMENT = "UPDATE coupons SET remaining_amount = remaining_amount - 1 WHERE name = %s"
_TAKE_SLOT = "INSERT INTO campaign_claims (campaign, user_id, coupon_name) VALUES (%s, %s, %s)"


class CampaignStrategy(Protocol):
    """How the one-coupon-per-campaign rule is kept."""

    @property
    def name(self) -> str: ...

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        """Claim ``coupon_name`` (a campaign coupon) for ``user_id`` on ``conn`` or raise."""
        ...


def check_and_take(
    cur: Cursor,
    user_id: str,
    coupon_name: str,
    fault: FaultHook | None,
    *,
    take_slot: bool,
) -> str | None:
    """The shared steps inside the caller's transaction; returns the coupon's campaign.

    ``fault`` is called at ``"after_campaign_check"`` (between the read the rule rests
    on and the writes): the seam where a test holds two claims to interleave them.
    """
    row = cur.execute(_LOCK_COUPON, (coupon_name,)).fetchone()
    if row is None:
        raise CouponNotFound()
    stock, campaign = row
    assert isinstance(stock, int)
    assert campaign is None or isinstance(campaign, str)
    if cur.execute(_HAS_CLAIMED, (user_id, coupon_name)).fetchone() is not None:
        raise AlreadyClaimed()
    if campaign is not None:
        if cur.execute(_HOLDS_CAMPAIGN, (user_id, campaign)).fetchone() is not None:
            raise CampaignClaimed()
        if fault is not None:
            fault("after_campaign_check")
    if stock <= 0:
        raise NoStock()
    cur.execute(_INSERT_CLAIM, (user_id, coupon_name))
    if fault is not None:
        fault("after_insert")
    if campaign is not None and take_slot:
        # The PRIMARY KEY (campaign, user_id) refuses a second slot even when the
        # check above read a snapshot without the other claim: a concurrent holder
        # makes this INSERT wait for it, then fail (23505) once it commits.
        try:
            cur.execute(_TAKE_SLOT, (campaign, user_id, coupon_name))
        except pg_errors.UniqueViolation as err:
            raise CampaignClaimed() from err
    cur.execute(_DECREMENT, (coupon_name,))
    return campaign


@dataclass(frozen=True)
class CheckThenInsert:
    """The naive rule: read whether the user holds the campaign, then insert."""

    name: str
    isolation: Isolation

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        cur = _cursor(conn)
        with conn.transaction():
            # First statement of the transaction: the level must be set before any read.
            cur.execute(f"SET TRANSACTION ISOLATION LEVEL {self.isolation}")
            check_and_take(cur, user_id, coupon_name, fault, take_slot=False)


@dataclass(frozen=True)
class SerializableRetry:
    name: str = "serializable"
    max_retries: int = 30
    backoff_s: float = 0.002
    retries: RetryCount = field(default_factory=RetryCount, compare=False, repr=False)

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        cur = _cursor(conn)
        for attempt in range(self.max_retries + 1):
            try:
                with conn.transaction():
                    cur.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                    check_and_take(cur, user_id, coupon_name, fault, take_slot=False)
                return
            except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected) as err:
                if attempt == self.max_retries:
                    raise Unavailable("service unavailable: too much contention") from err
                self.retries.add()
                # Jittered, capped exponential backoff, as the claim strategy's.
                time.sleep(random.uniform(0, min(0.05, self.backoff_s * 2**attempt)))


@dataclass(frozen=True)
class CampaignLock:
    name: str = "lock"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        cur = _cursor(conn)
        with conn.transaction():
            # The campaign is read before the lock (it never changes once created) so
            # the lock can be taken before the check; without a campaign: no lock.
            row = cur.execute("SELECT campaign FROM coupons WHERE name = %s", (coupon_name,))
            found = row.fetchone()
            if found is not None and found[0] is not None:
                # A JSON pair is an injective key for (campaign, user): "a|b","c" and
                # "a","b|c" never share a lock. A hash collision only makes two
                # unrelated claims wait for each other, never lets one through.
                key = json.dumps([found[0], user_id])
                cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (key,))
            check_and_take(cur, user_id, coupon_name, fault, take_slot=False)


@dataclass(frozen=True)
class Constraint:
    name: str = "constraint"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        cur = _cursor(conn)
        with conn.transaction():
            # READ COMMITTED: the check gives the clear refusal in the sequential case,
            # the slot's PRIMARY KEY the refusal in the concurrent one.
            check_and_take(cur, user_id, coupon_name, fault, take_slot=True)


CAMPAIGN_STRATEGIES: dict[str, CampaignStrategy] = {
    s.name: s
    for s in (
        CheckThenInsert("naive_rc", "READ COMMITTED"),
        CheckThenInsert("naive_rr", "REPEATABLE READ"),
        CheckThenInsert("naive_serializable", "SERIALIZABLE"),
        SerializableRetry(),
        CampaignLock(),
        Constraint(),
    )
}


def available_campaign_strategies() -> list[str]:
    return sorted(CAMPAIGN_STRATEGIES)


def get_campaign_strategy(name: str) -> CampaignStrategy:
    try:
        return CAMPAIGN_STRATEGIES[name]
    except KeyError:
        raise ValueError(
            f"unknown campaign strategy {name!r}; choose one of "
            f"{', '.join(available_campaign_strategies())}"
        ) from None
