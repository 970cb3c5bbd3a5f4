"""Claim strategies: the same claim, made atomic four ways, chosen by name.

Each strategy runs the whole claim on one autocommit connection and either returns
(claimed) or raises a domain error. The check order is the service's contract:
coupon exists, else ``CouponNotFound``; user has not claimed it, else
``AlreadyClaimed``; stock left, else ``NoStock``; then insert and decrement in one
transaction. Driver errors are left to the service, which translates them.

``row_lock``      SELECT ... FOR UPDATE on the coupon row (the original design)
``atomic``        one conditional statement (a data-modifying CTE), one round trip
``serializable``  SERIALIZABLE isolation, retries on 40001 / 40P01 until a deadline (time)
``advisory``      a transaction-scoped advisory lock on the coupon's name
``row_lock_pipelined``  ``row_lock``'s statements in psycopg pipeline mode: two round
                  trips instead of six, the row lock held for one of them
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import psycopg
from psycopg import errors as pg_errors
from psycopg.pq import TransactionStatus

from coupon_core.errors import AlreadyClaimed, CouponNotFound, NoStock, Unavailable
from coupon_core.validation import choose

__all__ = [
    "CONTENTION_BUDGET_S",
    "STRATEGIES",
    "ClaimConnection",
    "ClaimStrategy",
    "FaultHook",
    "available_strategies",
    "get_strategy",
    "kept_cursor",
    "register_strategy",
]

#: Called at named points inside a claim (``"after_insert"``); lab-only, None when off.
FaultHook = Callable[[str], None]

Conn = psycopg.Connection[tuple[object, ...]]
Cursor = psycopg.Cursor[tuple[object, ...]]


class ClaimConnection(psycopg.Connection[tuple[object, ...]]):
    """A connection that keeps one cursor for the claims made on it (the service's pool
    opens these).

    ``Connection.execute`` builds a new cursor, and its adapters' transformer, for every
    statement: ~8 of ~52 us of client CPU per statement (measured, one thread). Where
    the client's CPU is the limit (many coupons, two cores) one cursor per connection
    gave 5-18% more claims/s. A connection serves one claim at a time, and every
    statement's result is read before the next runs, so one cursor is enough.
    """

    _claim_cursor: Cursor | None = None
    _second_cursor: Cursor | None = None
    #: The session's statement_timeout in ms once read (``statement_budget_s``); -1: not yet.
    _statement_timeout_ms: int = -1

    def claim_cursor(self) -> Cursor:
        cur = self._claim_cursor
        if cur is None or cur.closed:
            cur = self._claim_cursor = self.cursor()
        return cur

    def second_cursor(self) -> Cursor:
        """Another kept cursor: a pipeline reads two statements' results in one batch,
        and a cursor keeps only its last statement's."""
        cur = self._second_cursor
        if cur is None or cur.closed:
            cur = self._second_cursor = self.cursor()
        return cur


def kept_cursor(conn: Conn) -> Cursor:
    """The connection's kept cursor, or a new one on a plain connection (the bundle and
    campaign claims use it too)."""
    return conn.claim_cursor() if isinstance(conn, ClaimConnection) else conn.cursor()


def _second_cursor(conn: Conn) -> Cursor:
    return conn.second_cursor() if isinstance(conn, ClaimConnection) else conn.cursor()


class ClaimStrategy(Protocol):
    """How a claim is made atomic."""

    # Read-only, so frozen dataclasses satisfy it.
    @property
    def name(self) -> str: ...

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        """Claim ``coupon_name`` for ``user_id`` on ``conn`` (autocommit) or raise."""
        ...


# Shared steps of the multi-statement strategies; each runs inside the caller's
# transaction, after whatever serialises concurrent claims of the coupon.
_HAS_CLAIMED = "SELECT 1 FROM claims WHERE user_id = %s AND coupon_name = %s"
_INSERT_CLAIM = "INSERT INTO claims (user_id, coupon_name) VALUES (%s, %s)"
_DECREMENT = "UPDATE coupons SET remaining_amount = remaining_amount - 1 WHERE name = %s"


def _refuse(remaining: tuple[object, ...] | None, claimed: Callable[[], bool]) -> None:
    """The refusals, in the contract's order: no coupon, claimed before, no stock."""
    if remaining is None:
        raise CouponNotFound()
    if claimed():
        raise AlreadyClaimed()
    stock = remaining[0]
    assert isinstance(stock, int)
    if stock <= 0:
        raise NoStock()


def _check_and_take(
    cur: Cursor,
    remaining: tuple[object, ...] | None,
    user_id: str,
    coupon_name: str,
    fault: FaultHook | None,
) -> None:
    _refuse(
        remaining,
        lambda: cur.execute(_HAS_CLAIMED, (user_id, coupon_name)).fetchone() is not None,
    )
    cur.execute(_INSERT_CLAIM, (user_id, coupon_name))
    if fault is not None:
        fault("after_insert")
    cur.execute(_DECREMENT, (coupon_name,))


@dataclass(frozen=True)
class RowLock:
    name: str = "row_lock"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        cur = kept_cursor(conn)
        with conn.transaction():
            row = cur.execute(
                "SELECT remaining_amount FROM coupons WHERE name = %s FOR UPDATE", (coupon_name,)
            ).fetchone()
            _check_and_take(cur, row, user_id, coupon_name, fault)


@dataclass(frozen=True)
class RowLockPipelined:
    """``row_lock``'s statements, in its order, sent in two batches (psycopg pipeline mode).

    ``row_lock`` waits for each of BEGIN, SELECT ... FOR UPDATE, the prior-claim check,
    INSERT, UPDATE and COMMIT in turn: six round trips, the row lock held over four.
    Here BEGIN, the locking SELECT and the check go in one batch (the check runs after
    the lock is granted, on a fresh READ COMMITTED snapshot, as in ``row_lock``); the
    branch on their results is the same; INSERT, UPDATE and COMMIT go in the second.
    Two round trips, the lock held over one.

    Why the explicit BEGIN: in pipeline mode the statements between two Syncs form an
    implicit transaction that the Sync commits. Should Python fail between queueing
    the INSERT and the UPDATE (a bug, a lab fault), the pipeline's exit still sends a
    Sync: without BEGIN it would commit the claim row without its decrement. Inside
    BEGIN a Sync commits nothing; the failure path queues ROLLBACK before that Sync,
    and rolls back afterwards whatever an aborted pipeline left open.
    """

    name: str = "row_lock_pipelined"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        cur, check = kept_cursor(conn), _second_cursor(conn)
        try:
            with conn.pipeline() as pipeline:
                try:
                    cur.execute("BEGIN")
                    cur.execute(
                        "SELECT remaining_amount FROM coupons WHERE name = %s FOR UPDATE",
                        (coupon_name,),
                    )
                    check.execute(_HAS_CLAIMED, (user_id, coupon_name))
                    remaining = cur.fetchone()  # one round trip for the three
                    _refuse(remaining, lambda: check.fetchone() is not None)
                    cur.execute(_INSERT_CLAIM, (user_id, coupon_name))
                    if fault is not None:
                        # The lab's faults expect the row inserted and the lock held
                        # here: run the INSERT (a Sync, inside BEGIN) before the hook.
                        pipeline.sync()
                        fault("after_insert")
                    cur.execute(_DECREMENT, (coupon_name,))
                    cur.execute("COMMIT")
                except BaseException:
                    # Before the exit's Sync. Skipped by the server if the pipeline is
                    # already aborted (an error): then the check below rolls back.
                    with contextlib.suppress(psycopg.Error):
                        cur.execute("ROLLBACK")
                    raise
        except BaseException:
            if not conn.closed and conn.info.transaction_status != TransactionStatus.IDLE:
                with contextlib.suppress(psycopg.Error):
                    conn.rollback()
            raise


@dataclass(frozen=True)
class Advisory:
    name: str = "advisory"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        cur = kept_cursor(conn)
        with conn.transaction():
            cur.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (coupon_name,))
            row = cur.execute(
                "SELECT remaining_amount FROM coupons WHERE name = %s", (coupon_name,)
            ).fetchone()
            _check_and_take(cur, row, user_id, coupon_name, fault)


# The decrement only happens when the coupon exists, the user has no claim in this
# statement's snapshot, and stock is left; the insert only when the decrement did.
# A concurrent claim by the same user that the snapshot could not see makes the
# INSERT fail on UNIQUE(user_id, coupon_name), which aborts the whole statement,
# decrement included: the constraint is part of the design, not a fallback.
ATOMIC_CLAIM_SQL = """
WITH target AS (
    SELECT name FROM coupons WHERE name = %(coupon)s
), prior AS (
    SELECT 1 FROM claims WHERE user_id = %(user)s AND coupon_name = %(coupon)s
), taken AS (
    UPDATE coupons SET remaining_amount = remaining_amount - 1
    WHERE name = %(coupon)s AND remaining_amount > 0 AND NOT EXISTS (SELECT 1 FROM prior)
    RETURNING name
), claimed AS (
    INSERT INTO claims (user_id, coupon_name) SELECT %(user)s, name FROM taken
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM target), EXISTS (SELECT 1 FROM prior),
       EXISTS (SELECT 1 FROM claimed)
"""


@dataclass(frozen=True)
class Atomic:
    name: str = "atomic"

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        # One statement: there is no point between insert and decrement to fault.
        cur = kept_cursor(conn)
        row = cur.execute(ATOMIC_CLAIM_SQL, {"user": user_id, "coupon": coupon_name}).fetchone()
        assert row is not None
        exists, prior, claimed = row
        if not exists:
            raise CouponNotFound()
        if prior:
            raise AlreadyClaimed()
        if not claimed:
            raise NoStock()


class RetryCount:
    """A count of retries, safe from any thread (a retry already sleeps: the lock is free)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._value = 0

    def add(self) -> None:
        with self._lock:
            self._value += 1

    @property
    def value(self) -> int:
        return self._value


#: How long a claim goes on retrying serialization failures and deadlocks when the
#: session sets no shorter statement_timeout. A count of retries was the bound before
#: (30): under CPU load each try is slower and more of them collide, and 30 jittered
#: tries took 1.6-2.1 s to be spent inside process_crash's kill and rolling windows
#: (3 of 10 seeds refused a claim 503 at load 18-24, 0 of 10 at load 8-14): a verdict
#: that depended on the machine's load. Half the lab's op bound and the server's default
#: request deadline (10 s), so the refusal (503) reaches a client before it gives up.
CONTENTION_BUDGET_S = 5.0


def statement_budget_s(conn: Conn) -> float | None:
    """The session's statement_timeout in seconds (None: none), read once per kept
    connection (one round trip, paid only by a claim that met contention)."""
    ms = conn._statement_timeout_ms if isinstance(conn, ClaimConnection) else -1
    if ms < 0:
        row = conn.execute(
            "SELECT setting::bigint FROM pg_settings WHERE name = 'statement_timeout'"
        ).fetchone()
        ms = int(row[0]) if row is not None and isinstance(row[0], int) else 0
        if isinstance(conn, ClaimConnection):
            conn._statement_timeout_ms = ms
    return ms / 1000 if ms > 0 else None


@dataclass(frozen=True)
class Serializable:
    """SERIALIZABLE, retried on 40001 / 40P01 until a deadline, then ``Unavailable``.

    The deadline is time, not a count: ``budget_s`` from the claim's first try, or the
    session's statement_timeout if that is shorter (a service that promises no statement
    runs longer than that refuses a contended claim within the same bound).
    """

    name: str = "serializable"
    budget_s: float = CONTENTION_BUDGET_S
    backoff_s: float = 0.002
    #: Serialization failures and deadlocks retried, since the process started (the lab
    #: reads it before and after a run: retries per claim). One uncontended lock per retry.
    retries: RetryCount = field(default_factory=RetryCount, compare=False, repr=False)

    def claim(self, conn: Conn, user_id: str, coupon_name: str, fault: FaultHook | None) -> None:
        cur = kept_cursor(conn)

        def once() -> None:
            with conn.transaction():
                cur.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
                row = cur.execute(
                    "SELECT remaining_amount FROM coupons WHERE name = %s", (coupon_name,)
                ).fetchone()
                _check_and_take(cur, row, user_id, coupon_name, fault)

        retry_conflicts(conn, once, self.budget_s, self.backoff_s, self.retries)


def retry_conflicts(
    conn: Conn, once: Callable[[], None], budget_s: float, backoff_s: float, retries: RetryCount
) -> None:
    """Run ``once`` (one whole transaction) again on a serialization failure or deadlock
    (40001 / 40P01) until a deadline, then ``Unavailable`` (a 503).

    The deadline is time, not a count: ``budget_s`` from the first try, or the session's
    statement_timeout if that is shorter (a service that promises no statement runs longer
    than that refuses a contended claim within the same bound). ``budget_s`` 0: no retry,
    the first conflict is refused. Every strategy that retries conflicts retries here.
    """
    started = time.monotonic()
    deadline: float | None = None
    attempt = 0
    while True:
        try:
            once()
            return
        except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected) as err:
            if deadline is None:
                statement = statement_budget_s(conn)
                budget = budget_s if statement is None else min(budget_s, statement)
                deadline = started + budget
            # Jittered exponential backoff, capped: spreads the retries of a
            # stampede so that each round lets someone commit.
            pause = random.uniform(0, min(0.05, backoff_s * 2 ** min(attempt, 16)))
            if time.monotonic() + pause >= deadline:
                raise Unavailable("service unavailable: too much contention") from err
            retries.add()
            attempt += 1
            time.sleep(pause)


STRATEGIES: dict[str, ClaimStrategy] = {
    s.name: s for s in (RowLock(), Atomic(), Serializable(), Advisory(), RowLockPipelined())
}
_REAL = frozenset(STRATEGIES)


def register_strategy(strategy: ClaimStrategy) -> None:
    """Make another strategy selectable by name (the lab registers its mutants here)."""
    if strategy.name in _REAL:
        raise ValueError(f"cannot replace the built-in strategy {strategy.name!r}")
    STRATEGIES[strategy.name] = strategy


def available_strategies(*, include_registered: bool = False) -> list[str]:
    """The built-in strategy names, and with ``include_registered`` the lab's too."""
    return sorted(STRATEGIES if include_registered else _REAL)


def get_strategy(name: str) -> ClaimStrategy:
    return choose(STRATEGIES, "strategy", name, available_strategies())
