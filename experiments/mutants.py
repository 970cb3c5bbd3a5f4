"""Mutants: the claim bugs people really write, and schemas missing a constraint, to prove detection.

A mutant is a claim strategy (a ``coupon_core.strategies.ClaimStrategy`` named
``mutant:<bug>``), optionally run on a schema mutant (the contract's tables without
one constraint, in a database of its own on the same server: the shared tables are
never altered). ``install()`` registers the mutant strategies with coupon_core; the
lab calls it, coupon_core never does.

    strategy mutants (real schema)
    lost_update            read stock, write back ``remaining - 1`` as a value, no lock
    check_then_insert      check, insert, decrement: three autocommit statements
    decrement_after_commit claim committed in one transaction, decrement in a second
    swallow_unique         ON CONFLICT DO NOTHING on the claim, decrement anyway
    serializable_no_retry  SERIALIZABLE, a serialization failure goes to the caller
    lock_after_check       check stock and claims, then take the row lock; no re-check

    schema mutants, each paired with the strategy that relies on what is missing
    no_unique + atomic              the one statement needs UNIQUE to abort a double claim
    no_check + lock_after_check     only CHECK (remaining >= 0) stops the stale decrement

Equivalent mutants (no interleaving can expose them) say why in ``equivalent``:
``lock_after_check`` on the real schema (CHECK and UNIQUE roll the stale claim
back), and ``row_lock`` without UNIQUE or CHECK (its lock serialises the checks).
"""

from __future__ import annotations

import contextlib
import threading
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from coupon_core import (
    AlreadyClaimed,
    CouponNotFound,
    FaultHook,
    NoStock,
    register_strategy,
)
from coupon_core.strategies import STRATEGIES

__all__ = [
    "MUTANTS",
    "MUTANT_STRATEGIES",
    "SCHEMA_MUTANTS",
    "Mutant",
    "install",
    "mutant",
    "mutant_database",
    "prepare",
]

Conn = psycopg.Connection[tuple[object, ...]]

_STOCK = "SELECT remaining_amount FROM coupons WHERE name = %s"
_HAS_CLAIMED = "SELECT 1 FROM claims WHERE user_id = %s AND coupon_name = %s"
_INSERT = "INSERT INTO claims (user_id, coupon_name) VALUES (%s, %s)"
_DECREMENT = "UPDATE coupons SET remaining_amount = remaining_amount - 1 WHERE name = %s"


def _checks(conn: Conn, stock: tuple[object, ...] | None, user_id: str, coupon: str) -> int:
    """The contract's checks on what was read, with nothing to keep them true after."""
    if stock is None:
        raise CouponNotFound()
    if conn.execute(_HAS_CLAIMED, (user_id, coupon)).fetchone() is not None:
        raise AlreadyClaimed()
    remaining = stock[0]
    assert isinstance(remaining, int)
    if remaining <= 0:
        raise NoStock()
    return remaining


@dataclass(frozen=True)
class LostUpdate:
    """Read-modify-write of the stock as a value: two readers of 1 both write 0."""

    name: str = "mutant:lost_update"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        with conn.transaction():
            remaining = _checks(
                conn, conn.execute(_STOCK, (coupon_name,)).fetchone(), user_id, coupon_name
            )
            conn.execute(_INSERT, (user_id, coupon_name))
            conn.execute(
                "UPDATE coupons SET remaining_amount = %s WHERE name = %s",
                (remaining - 1, coupon_name),
            )


@dataclass(frozen=True)
class CheckThenInsert:
    """No transaction: the checks' answers are stale by the time the writes land."""

    name: str = "mutant:check_then_insert"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        _checks(conn, conn.execute(_STOCK, (coupon_name,)).fetchone(), user_id, coupon_name)
        conn.execute(_INSERT, (user_id, coupon_name))  # committed on its own
        if fault is not None:
            fault("after_insert")
        conn.execute(_DECREMENT, (coupon_name,))  # may fail on CHECK: the claim stays


@dataclass(frozen=True)
class DecrementAfterCommit:
    """The claim is checked under the row lock and committed; the decrement comes later."""

    name: str = "mutant:decrement_after_commit"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        with conn.transaction():
            row = conn.execute(_STOCK + " FOR UPDATE", (coupon_name,)).fetchone()
            _checks(conn, row, user_id, coupon_name)
            conn.execute(_INSERT, (user_id, coupon_name))
        # The lock went with the commit: others see the old stock until this lands.
        with conn.transaction():
            conn.execute(_DECREMENT, (coupon_name,))


@dataclass(frozen=True)
class SwallowUnique:
    """A duplicate claim is silenced (ON CONFLICT DO NOTHING), and stock still taken."""

    name: str = "mutant:swallow_unique"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        with conn.transaction():
            _checks(conn, conn.execute(_STOCK, (coupon_name,)).fetchone(), user_id, coupon_name)
            conn.execute(_INSERT + " ON CONFLICT DO NOTHING", (user_id, coupon_name))
            conn.execute(_DECREMENT, (coupon_name,))


@dataclass(frozen=True)
class SerializableNoRetry:
    """SERIALIZABLE done right but for the retry: contention becomes an error."""

    name: str = "mutant:serializable_no_retry"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        with conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
            _checks(conn, conn.execute(_STOCK, (coupon_name,)).fetchone(), user_id, coupon_name)
            conn.execute(_INSERT, (user_id, coupon_name))
            conn.execute(_DECREMENT, (coupon_name,))


@dataclass(frozen=True)
class LockAfterCheck:
    """The row lock is taken after the checks, so they are not repeated under it."""

    name: str = "mutant:lock_after_check"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        with conn.transaction():
            _checks(conn, conn.execute(_STOCK, (coupon_name,)).fetchone(), user_id, coupon_name)
            conn.execute(_STOCK + " FOR UPDATE", (coupon_name,))
            conn.execute(_INSERT, (user_id, coupon_name))
            conn.execute(_DECREMENT, (coupon_name,))


MUTANT_STRATEGIES: tuple[Any, ...] = (
    LostUpdate(),
    CheckThenInsert(),
    DecrementAfterCommit(),
    SwallowUnique(),
    SerializableNoRetry(),
    LockAfterCheck(),
)

_install_lock = threading.Lock()


def install() -> list[str]:
    """Register every mutant strategy with coupon_core (idempotent); their names."""
    with _install_lock:
        for strategy in MUTANT_STRATEGIES:
            if strategy.name not in STRATEGIES:
                register_strategy(strategy)
    return [s.name for s in MUTANT_STRATEGIES]


# -- schema mutants ------------------------------------------------------------------------

_COUPONS = """
CREATE TABLE IF NOT EXISTS coupons (
    name VARCHAR(255) PRIMARY KEY,
    amount INTEGER NOT NULL CHECK (amount > 0),
    remaining_amount INTEGER NOT NULL {check},
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS claims (
    id SERIAL PRIMARY KEY,
    user_id VARCHAR(255) NOT NULL,
    coupon_name VARCHAR(255) NOT NULL REFERENCES coupons(name),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(){unique}
);
CREATE INDEX IF NOT EXISTS idx_claims_coupon_name ON claims(coupon_name);
CREATE INDEX IF NOT EXISTS idx_claims_user_id ON claims(user_id);
"""

# The service's multi-row table (coupon_core.schema.MULTIROW_SQL) keys each slot to its
# claim by a foreign key to claims' UNIQUE(user_id, coupon_name); without that UNIQUE no
# such key can exist, so the mutant makes the table first, without it (the service's
# CREATE TABLE IF NOT EXISTS then leaves it). Campaigns are not what this mutant exposes.
_CAMPAIGN_CLAIMS_UNKEYED = """
CREATE TABLE IF NOT EXISTS campaign_claims (
    campaign VARCHAR(255) NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    coupon_name VARCHAR(255) NOT NULL,
    PRIMARY KEY (campaign, user_id)
);
"""

#: The contract's schema, each without one constraint.
SCHEMA_MUTANTS: dict[str, str] = {
    "no_unique": _COUPONS.format(check="CHECK (remaining_amount >= 0)", unique="")
    + _CAMPAIGN_CLAIMS_UNKEYED,
    "no_check": _COUPONS.format(check="", unique=",\n    UNIQUE(user_id, coupon_name)"),
}
_DB_PREFIX = "coupon_mutant_"
_db_lock = threading.Lock()


def mutant_database(url: str, schema: str) -> str:
    """A conninfo for database ``coupon_mutant_<schema>`` on ``url``'s server, made if missing.

    The service applies its own schema with ``CREATE TABLE IF NOT EXISTS``, which
    leaves the mutant tables (made first, here) as they are.
    """
    ddl = SCHEMA_MUTANTS[schema]
    dbname = _DB_PREFIX + schema
    with _db_lock, psycopg.connect(url, autocommit=True, connect_timeout=10) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone()
        if exists is None:
            # Two labs creating it at once: the loser sees duplicate_database, which is fine.
            with contextlib.suppress(pg_errors.DuplicateDatabase, pg_errors.UniqueViolation):
                admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    params = conninfo_to_dict(url)
    params["dbname"] = dbname
    target = make_conninfo("", **{k: v for k, v in params.items() if v is not None})
    with psycopg.connect(target, autocommit=True, connect_timeout=10) as conn:
        conn.execute("SELECT pg_advisory_lock(42)")
        try:
            conn.execute(ddl)
        finally:
            conn.execute("SELECT pg_advisory_unlock(42)")
        _assert_schema(conn, schema)
    return target


def _assert_schema(conn: Conn, schema: str) -> None:
    """The constraint the mutant lacks really is missing, and the others are there."""
    rows = conn.execute(
        "SELECT conrelid::regclass::text, contype FROM pg_constraint"
        " WHERE conrelid IN ('coupons'::regclass, 'claims'::regclass)"
    ).fetchall()
    kinds = {(str(t), str(c)) for t, c in rows}
    has_unique = ("claims", "u") in kinds
    checks = conn.execute(
        "SELECT count(*) FROM pg_constraint WHERE conrelid = 'coupons'::regclass AND contype = 'c'"
    ).fetchone()
    assert checks is not None
    has_stock_check = int(str(checks[0])) >= 2
    if has_unique == (schema == "no_unique") or has_stock_check == (schema == "no_check"):
        raise RuntimeError(f"database {_DB_PREFIX}{schema} does not have the mutant schema")


# -- the catalog ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Mutant:
    """One bug to detect: a strategy, maybe on a schema mutant, and how a stampede shows it."""

    name: str
    strategy: str
    bug: str
    schema: str | None = None
    #: The targeted stampede that shows it: "users" (distinct users, small stock) or
    #: "one_user" (one user, many requests, ample stock).
    stampede: str = "users"
    stock: int = 1
    #: Why no interleaving can expose it; None for a real (killable) mutant.
    equivalent: str | None = None
    #: Whether a linearizability check can see it (False: a liveness bug, refusals only).
    safety: bool = True


MUTANTS: tuple[Mutant, ...] = (
    Mutant(
        "lost_update",
        "mutant:lost_update",
        "stock written back as read-1 without a lock: concurrent claims all succeed",
    ),
    Mutant(
        "check_then_insert",
        "mutant:check_then_insert",
        "no transaction: a claim row lands, then its decrement fails; stock overrun",
    ),
    Mutant(
        "decrement_after_commit",
        "mutant:decrement_after_commit",
        "the decrement runs after the claim commits: others see stale stock",
    ),
    Mutant(
        "swallow_unique",
        "mutant:swallow_unique",
        "a duplicate claim is silenced and stock still taken: one user, two successes",
        stampede="one_user",
        stock=100,
    ),
    Mutant(
        "serializable_no_retry",
        "mutant:serializable_no_retry",
        "serialization failures reach the caller: claims refused while stock is left",
        stock=10,
        safety=False,
    ),
    Mutant(
        "lock_after_check",
        "mutant:lock_after_check",
        "checks before the row lock, not repeated under it",
        equivalent=(
            "on the real schema the stale claim's decrement breaks CHECK (remaining >= 0)"
            " and a stale duplicate breaks UNIQUE: the transaction rolls back and the"
            " answer (no stock, already claimed) is the right one"
        ),
    ),
    Mutant(
        "no_unique+atomic",
        "atomic",
        "no UNIQUE(user_id, coupon_name): the one statement's snapshot misses a concurrent claim",
        schema="no_unique",
        stampede="one_user",
        stock=100,
    ),
    Mutant(
        "no_check+lock_after_check",
        "mutant:lock_after_check",
        "no CHECK (remaining >= 0): nothing stops the stale decrement",
        schema="no_check",
    ),
    Mutant(
        "no_unique+row_lock",
        "row_lock",
        "no UNIQUE(user_id, coupon_name) under row_lock",
        schema="no_unique",
        stampede="one_user",
        stock=100,
        equivalent="the row lock serialises claims of a coupon: the claimed check runs under it",
    ),
    Mutant(
        "no_check+row_lock",
        "row_lock",
        "no CHECK (remaining >= 0) under row_lock",
        schema="no_check",
        equivalent="the row lock serialises claims of a coupon: the stock check runs under it",
    ),
)


def mutant(name: str) -> Mutant:
    for m in MUTANTS:
        if m.name == name:
            return m
    raise KeyError(f"unknown mutant {name!r}; have {', '.join(m.name for m in MUTANTS)}")


def prepare(m: Mutant, database_url: str) -> tuple[str, str]:
    """``(strategy, database_url)`` to run ``m`` with: strategies installed, schema made."""
    install()
    url = mutant_database(database_url, m.schema) if m.schema else database_url
    return m.strategy, url
