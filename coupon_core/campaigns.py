"""Campaign claim strategies: a user holds at most one coupon of a campaign, three ways, at
any isolation level.

A claim of a coupon that belongs to a campaign runs one of these (``ServiceConfig.
campaign_strategy``, at ``ServiceConfig.isolation`` when set); a coupon in no campaign
is claimed by the claim strategy as before. Each makes the same checks, in this order:
coupon exists, else ``CouponNotFound``; user has not claimed this coupon, else
``AlreadyClaimed``; user holds no other coupon of the campaign, else
``CampaignClaimed``; stock left, else ``NoStock``; then insert and decrement in one
transaction (docs/multirow.md).

The campaign rule spans rows: two claims of *different* coupons of one campaign by one
user lock different coupon rows, so the coupon row lock that keeps stock right does
not order them. The implementations (``IMPLEMENTATIONS``):

``naive``       check-then-insert: write skew (G2-item) at READ COMMITTED and at
                REPEATABLE READ (snapshot isolation allows it); safe at SERIALIZABLE
``lock``        a transaction-scoped advisory lock on (campaign, user) before the check:
                safe at READ COMMITTED (each statement reads after the lock); at
                REPEATABLE READ the snapshot is taken by the transaction's first
                statement, before the lock is granted, so the check still misses the
                claim it waited for: write skew again
``constraint``  the database decides: a row in ``campaign_claims`` whose PRIMARY KEY
                (campaign, user_id) refuses the second, at every level (recommended)

Every implementation retries a serialization failure or deadlock (40001 / 40P01, which
REPEATABLE READ and SERIALIZABLE raise) until a deadline, as the ``serializable`` claim
strategy does (``strategies.retry_conflicts``); past it the claim is ``Unavailable``.
The named presets (``CAMPAIGN_STRATEGIES``): ``naive`` and
``naive_rc`` (READ COMMITTED), ``naive_rr`` (REPEATABLE READ), ``serializable`` (naive
at SERIALIZABLE), ``naive_serializable`` (the same with no retry: a conflict is a 503),
``lock`` and ``constraint`` (READ COMMITTED).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from psycopg import errors as pg_errors

from coupon_core.errors import (
    AlreadyClaimed,
    CampaignClaimed,
    CouponNotFound,
    NoStock,
)
from coupon_core.strategies import (
    CONTENTION_BUDGET_S,
    Conn,
    Cursor,
    FaultHook,
    RetryCount,
    kept_cursor,
    retry_conflicts,
)
from coupon_core.validation import choose

__all__ = [
    "CAMPAIGN_STRATEGIES",
    "IMPLEMENTATIONS",
    "LEVELS",
    "CampaignClaim",
    "CampaignStrategy",
    "available_campaign_strategies",
    "check_level",
    "get_campaign_strategy",
]

#: The isolation levels by the lab's names, and PostgreSQL's.
LEVELS: dict[str, str] = {
    "read_committed": "READ COMMITTED",
    "repeatable_read": "REPEATABLE READ",
    "serializable": "SERIALIZABLE",
}
Implementation = Literal["naive", "lock", "constraint"]
IMPLEMENTATIONS: tuple[Implementation, ...] = ("naive", "lock", "constraint")

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


def check_level(isolation: str) -> str:
    """PostgreSQL's name of the level ``isolation`` (a key of ``LEVELS``); ValueError if none."""
    return choose(LEVELS, "isolation", isolation)


@dataclass(frozen=True)
class CampaignClaim:
    """One implementation of the rule at one isolation level (see the module)."""

    name: str
    implementation: Implementation
    isolation: str = "read_committed"
    #: How long conflicts are retried (``strategies.retry_conflicts``); 0: not at all.
    budget_s: float = CONTENTION_BUDGET_S
    backoff_s: float = 0.002
    retries: RetryCount = field(default_factory=RetryCount, compare=False, repr=False)

    def at(self, isolation: str) -> CampaignClaim:
        """The same implementation at ``isolation`` (its retry count shared)."""
        check_level(isolation)
        return replace(self, isolation=isolation)

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        cur = kept_cursor(conn)
        level = check_level(self.isolation)

        def once() -> None:
            with conn.transaction():
                # First statement of the transaction: the level must be set before
                # any read (SET TRANSACTION takes no snapshot).
                cur.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
                if self.implementation == "lock":
                    _lock(cur, user_id, coupon_name)
                check_and_take(
                    cur,
                    user_id,
                    coupon_name,
                    fault,
                    take_slot=self.implementation == "constraint",
                )

        retry_conflicts(conn, once, self.budget_s, self.backoff_s, self.retries)


def _lock(cur: Cursor, user_id: str, coupon_name: str) -> None:
    """The advisory lock on (campaign, user), taken before the check. The campaign is
    read first (it never changes once created) to name the lock; at REPEATABLE READ
    that read is what takes the transaction's snapshot, before the lock is granted."""
    found = cur.execute("SELECT campaign FROM coupons WHERE name = %s", (coupon_name,)).fetchone()
    if found is not None and found[0] is not None:
        # A JSON pair is an injective key for (campaign, user): "a|b","c" and "a","b|c"
        # never share a lock. A hash collision only makes two unrelated claims wait for
        # each other, never lets one through.
        key = json.dumps([found[0], user_id])
        cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 1))", (key,))


CAMPAIGN_STRATEGIES: dict[str, CampaignStrategy] = {
    s.name: s
    for s in (
        CampaignClaim("naive", "naive"),
        CampaignClaim("naive_rc", "naive"),
        CampaignClaim("naive_rr", "naive", "repeatable_read"),
        CampaignClaim("naive_serializable", "naive", "serializable", budget_s=0.0),
        CampaignClaim("serializable", "naive", "serializable"),
        CampaignClaim("lock", "lock"),
        CampaignClaim("constraint", "constraint"),
    )
}


def available_campaign_strategies() -> list[str]:
    return sorted(CAMPAIGN_STRATEGIES)


def get_campaign_strategy(name: str, isolation: str | None = None) -> CampaignStrategy:
    """The preset ``name``, at ``isolation`` when given (else its own level)."""
    strategy = choose(
        CAMPAIGN_STRATEGIES, "campaign strategy", name, available_campaign_strategies()
    )
    if isolation is None:
        return strategy
    if not isinstance(strategy, CampaignClaim):
        raise ValueError(f"campaign strategy {name!r} has no isolation level to set")
    return strategy.at(isolation)
