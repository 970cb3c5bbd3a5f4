"""The coupon service: create, get and claim on a PostgreSQL connection pool.

And the multi-row rules of docs/multirow.md: campaigns (``create(..., campaign=)``, a
campaign coupon claimed by the campaign strategy), bundles (``claim_bundle``) and the
multi-coupon read (``get_many``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import psycopg
import psycopg_pool
from psycopg import errors as pg_errors

from coupon_core.breaker import DEFAULT_PROBE_S, DEFAULT_THRESHOLD, CircuitBreaker, Outcome
from coupon_core.bundles import BUNDLE_CLAIMS, MAX_BUNDLE, MULTI_READS, validate_names
from coupon_core.campaigns import CampaignStrategy, check_level, get_campaign_strategy
from coupon_core.errors import (
    AlreadyClaimed,
    CampaignClaimed,
    CouponError,
    CouponExists,
    CouponNotFound,
    InternalError,
    InvalidRequest,
    NoStock,
    Unavailable,
)
from coupon_core.pool import LifoConnectionPool
from coupon_core.schema import apply_schema
from coupon_core.strategies import ClaimConnection, ClaimStrategy, FaultHook, get_strategy
from coupon_core.validation import storable, validate_amount, validate_text

__all__ = ["CouponService", "CouponView", "ServiceConfig"]

log = logging.getLogger("coupon_core")

T = TypeVar("T")
Conn = psycopg.Connection[tuple[object, ...]]


@dataclass(frozen=True)
class CouponView:
    """A coupon as read, with who claimed it in claim order."""

    name: str
    amount: int
    remaining_amount: int
    claimed_by: list[str]

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "amount": self.amount,
            "remaining_amount": self.remaining_amount,
            "claimed_by": list(self.claimed_by),
        }


@dataclass(frozen=True)
class ServiceConfig:
    """Pool and timeout settings; the defaults keep every call bounded."""

    strategy: str = "row_lock"
    pool_min: int = 4
    pool_max: int = 20
    pool_timeout: float = 10.0  # seconds a call waits for a connection
    connect_timeout: float = 5.0  # seconds to open a connection
    statement_timeout_ms: int = 0  # 0: none
    lock_timeout_ms: int = 0  # 0: none
    apply_schema: bool = True
    #: Names the service's backends in pg_stat_activity (the lab's faults find them by it).
    application_name: str = "coupon-service"
    #: Consecutive connection failures that open the circuit breaker (0: no breaker),
    #: and how often an open breaker probes the database (coupon_core.breaker).
    breaker_threshold: int = DEFAULT_THRESHOLD
    breaker_probe_s: float = DEFAULT_PROBE_S
    #: How a claim of a campaign coupon keeps one coupon per user and campaign
    #: (coupon_core.campaigns); ``constraint`` lets the database decide.
    campaign_strategy: str = "constraint"
    #: How ``get_many`` reads: ``snapshot`` (one statement) or ``per_statement``.
    multi_read: str = "snapshot"
    #: How ``claim_bundle`` claims (``one_transaction``; the lab may register mutants).
    bundle_claim: str = "one_transaction"
    #: The isolation level of campaign claims and multi-coupon reads (``read_committed``,
    #: ``repeatable_read``, ``serializable``); None: the campaign strategy's own, and
    #: READ COMMITTED for the reads.
    isolation: str | None = None

    def conninfo_options(self) -> str:
        opts = []
        if self.statement_timeout_ms:
            opts.append(f"-c statement_timeout={self.statement_timeout_ms}")
        if self.lock_timeout_ms:
            opts.append(f"-c lock_timeout={self.lock_timeout_ms}")
        return " ".join(opts)


# While the breaker suspects the database, a call waits for a connection in slices this
# long and gives up once the circuit opens: the slice bounds how long a call already
# waiting then keeps waiting (each slice re-queues the caller behind newer waiters;
# only while suspect, never in healthy operation).
_SUSPECT_SLICE_S = 0.02

# Errors that mean "the database could not answer", as opposed to a bug.
_TRANSIENT: tuple[type[BaseException], ...] = (
    psycopg.OperationalError,  # connection lost, server shutting down, timeouts
    psycopg_pool.PoolTimeout,
    psycopg_pool.PoolClosed,
)

# The pool's own refusals (no connection free in time, the pool closed) subclass
# ``psycopg.OperationalError`` but say nothing about the database. Counted as connection
# failures, an exhausted pool made the breaker suspect: later calls waited in slices
# (refused by a 20 ms slice, behind callers that came after them) and every two pool
# timeouts started a probe (pool_exhaustion over HTTP: 51-73 of ~110 refused calls
# began with the breaker suspect, on a database that never failed).
_POOL_REFUSALS: tuple[type[BaseException], ...] = (
    psycopg_pool.PoolTimeout,
    psycopg_pool.PoolClosed,
)


# PostgreSQL's XX000 (internal_error) is a bug or corruption, a 500, with one exception:
# ``new multixact has more than one updating member`` (multixact.c,
# MultiXactIdCreateFromMembers) is a race in the server, not in this service. An UPDATE
# of a row whose xmax is a multixact (the claim's foreign key took FOR KEY SHARE on the
# coupon while another transaction updated it) finds that updater aborted in pg_xact and
# goes ahead, while MultiXactIdExpand keeps it as a member because it is still in the
# ProcArray (an aborting transaction, a serialization failure or a terminated backend,
# leaves the ProcArray after its abort is recorded): two updating members, and the
# statement fails. Seen under SERIALIZABLE (DESIGN.md's field notes: 64 workers, and
# pgbench too; issue 26: connection_drop terminating backends mid-claim). The failing
# transaction is rolled back and nothing of it stays: a refusal (503), never a 500 nor
# an unknown outcome.
_MULTIXACT_RACE = "new multixact has more than one updating member"


def _server_race(err: psycopg.Error) -> bool:
    """PostgreSQL refused a statement for a race of its own (rolled back, transient)."""
    return isinstance(err, pg_errors.InternalError_) and (
        err.diag.message_primary or ""
    ).startswith(_MULTIXACT_RACE)


def _writable(conn: Conn) -> None:
    """The pool's check for a read-write URL: refuse a connection to a standby.

    No round trip: PostgreSQL 14+ reports ``in_hot_standby`` to the client as it
    changes. A node demoted after a failover (rejoined as a standby) is dropped here
    instead of being handed out again; a dead one fails its first statement, and
    ``_check_pool_soon`` then clears its siblings.
    """
    if conn.broken or conn.closed or conn.info.parameter_status("in_hot_standby") == "on":
        raise psycopg.OperationalError("connection is to a standby, or gone")


def _wants_primary(url: str) -> bool:
    return "target_session_attrs=read-write" in url.replace(" ", "")


@dataclass
class CouponService:
    """The coupon service. ``CouponService.connect(url)`` opens a pool and the schema.

    ``read_url`` (optional): gets go to their own pool on that URL (a standby),
    creates and claims to ``url``.
    """

    pool: psycopg_pool.ConnectionPool[Conn]
    strategy: ClaimStrategy
    config: ServiceConfig = field(default_factory=ServiceConfig)
    #: Lab-only fault hook called at named points of a claim; None (the default) costs nothing.
    fault: FaultHook | None = None
    #: Where gets go when a read URL was given (a standby); None: the main pool.
    read_pool: psycopg_pool.ConnectionPool[Conn] | None = None
    #: Refuses calls at once while the database is unreachable; None: no breaker.
    breaker: CircuitBreaker | None = None
    #: Claims of campaign coupons (coupon_core.campaigns).
    campaign: CampaignStrategy = field(default_factory=lambda: get_campaign_strategy("constraint"))
    # Each coupon's campaign (None: in none), learnt at its first claim here. A coupon's
    # campaign is set when it is created and nothing changes it afterwards, so a
    # learnt value stays true; a coupon not found is not remembered.
    _campaigns: dict[str, str | None] = field(default_factory=dict, init=False, repr=False)
    _last_check: float = field(default=0.0, init=False, repr=False)
    _check_lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    @classmethod
    def connect(
        cls,
        url: str,
        config: ServiceConfig | None = None,
        *,
        read_url: str | None = None,
        **overrides: Any,
    ) -> CouponService:
        """Open a pool on ``url`` (applying the schema first) and return the service."""
        config = config or ServiceConfig()
        if overrides:
            config = ServiceConfig(**{**config.__dict__, **overrides})
        strategy = get_strategy(config.strategy)
        campaign = get_campaign_strategy(config.campaign_strategy, config.isolation)
        for what, name, known in (
            ("multi_read", config.multi_read, MULTI_READS),
            ("bundle_claim", config.bundle_claim, BUNDLE_CLAIMS),
        ):
            if name not in known:
                raise ValueError(
                    f"unknown {what} {name!r}; choose one of {', '.join(sorted(known))}"
                )
        if config.apply_schema:
            try:
                apply_schema(url)
            except psycopg.Error as err:
                raise Unavailable("service unavailable: cannot reach the database") from err
        kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, round(config.connect_timeout)),
            # Notice a dead peer (network fault) instead of waiting forever on a socket.
            "keepalives": 1,
            "keepalives_idle": 5,
            "keepalives_interval": 2,
            "keepalives_count": 3,
            "application_name": config.application_name,
        }
        if options := config.conninfo_options():
            kwargs["options"] = options
        breaker = _breaker(url, kwargs, config)
        pool = _open_pool(url, config, kwargs, "coupon-service", breaker)
        read_pool = None if read_url is None else _open_pool(read_url, config, kwargs, "reads")
        return cls(
            pool=pool,
            strategy=strategy,
            config=config,
            read_pool=read_pool,
            breaker=breaker,
            campaign=campaign,
        )

    def close(self) -> None:
        if self.breaker is not None:
            self.breaker.close()
        if self.read_pool is not None:
            self.read_pool.close()
        self.pool.close()

    def __enter__(self) -> CouponService:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- operations ------------------------------------------------------------------

    def create(self, name: str, amount: int, campaign: str | None = None) -> None:
        """Create a coupon; ``campaign`` (optional, a name like any other) groups it."""
        name = validate_text("name", name)
        amount = validate_amount(amount)
        if campaign is not None:
            campaign = validate_text("campaign", campaign)

        def run(conn: Conn) -> None:
            if campaign is None:  # the statement of the contract, unchanged
                conn.execute(
                    "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, %s, %s)",
                    (name, amount, amount),
                )
                return
            conn.execute(
                "INSERT INTO coupons (name, amount, remaining_amount, campaign)"
                " VALUES (%s, %s, %s, %s)",
                (name, amount, amount, campaign),
            )

        self._run(run)

    def get(self, name: str) -> CouponView:
        if not isinstance(name, str) or not storable(name):
            raise CouponNotFound()

        def run(conn: Conn) -> tuple[object, ...] | None:
            return conn.execute(
                "SELECT c.name, c.amount, c.remaining_amount,"
                " COALESCE((SELECT array_agg(user_id ORDER BY id) FROM claims"
                " WHERE coupon_name = c.name), '{}')"
                " FROM coupons c WHERE c.name = %s",
                (name,),
            ).fetchone()

        row = self._run(run, pool=self.read_pool)
        if row is None:
            raise CouponNotFound()
        cname, amount, remaining, claimed_by = row
        assert isinstance(cname, str)
        assert isinstance(amount, int)
        assert isinstance(remaining, int)
        assert isinstance(claimed_by, list)
        return CouponView(cname, amount, remaining, [str(u) for u in claimed_by])

    def claim(self, user_id: str, coupon_name: str) -> None:
        user_id = validate_text("user_id", user_id)
        coupon_name = validate_text("coupon_name", coupon_name)
        fault = self.fault
        if coupon_name not in self._campaigns:
            self._campaigns_of([coupon_name])
            if coupon_name not in self._campaigns:
                raise CouponNotFound()
        # A coupon in no campaign keeps the claim strategy and its one round trip.
        strategy = self.strategy if self._campaigns[coupon_name] is None else self.campaign
        self._run(lambda conn: strategy.claim(conn, user_id, coupon_name, fault))

    def claim_bundle(self, user_id: str, coupon_names: list[str]) -> None:
        """Claim every coupon of ``coupon_names`` for ``user_id`` in one transaction, or
        none: the first refusal, in the order given, is raised (coupon_core.bundles)."""
        user_id = validate_text("user_id", user_id)
        names = validate_names("coupon_names", coupon_names)
        fault, claim = self.fault, BUNDLE_CLAIMS[self.config.bundle_claim]
        self._run(lambda conn: claim(conn, user_id, names, fault))

    def get_many(self, names: list[str], *, multi_read: str | None = None) -> list[CouponView]:
        """The coupons among ``names`` that exist, in the order asked (missing ones are
        left out), read as ``multi_read`` says (default: the config's)."""
        if not isinstance(names, list) or not names:
            raise InvalidRequest("names must not be empty")
        if len(names) > MAX_BUNDLE:
            raise InvalidRequest(f"names must hold at most {MAX_BUNDLE} names")
        if not all(isinstance(n, str) and n.strip() for n in names):
            raise InvalidRequest("names must not hold a blank name")
        if len(set(names)) != len(names):
            raise InvalidRequest("names must not repeat a name")
        variant = multi_read or self.config.multi_read
        if variant not in MULTI_READS:
            raise InvalidRequest(f"unknown multi_read {variant!r}")
        read, fault = MULTI_READS[variant], self.fault
        level = check_level(self.config.isolation or "read_committed")
        rows = self._run(lambda conn: read(conn, names, fault, level), pool=self.read_pool)
        return [CouponView(*row) for row in rows]

    def _campaigns_of(self, names: list[str]) -> None:
        """Learn the campaign of each coupon of ``names`` that exists."""
        found = self._run(
            lambda conn: conn.execute(
                "SELECT name, campaign FROM coupons WHERE name = ANY(%s)", (names,)
            ).fetchall()
        )
        for name, campaign in found:
            self._campaigns[str(name)] = None if campaign is None else str(campaign)

    def health(self) -> tuple[bool, str]:
        """Whether the database answers now, and a short reason when not."""
        try:
            self._run(lambda conn: conn.execute("SELECT 1").fetchone(), timeout=2.0)
        except Unavailable:
            return False, "database unavailable"
        except CouponError as err:
            return False, str(err)
        return True, "ok"

    def pool_stats(self) -> dict[str, int]:
        return dict(self.pool.get_stats())

    # -- internals -------------------------------------------------------------------

    def _run(
        self,
        fn: Callable[[Conn], T],
        timeout: float | None = None,
        pool: psycopg_pool.ConnectionPool[Conn] | None = None,
    ) -> T:
        """Run ``fn`` on a pooled connection, translating every driver error.

        ``getconn``/``putconn`` rather than ``pool.connection()``: that context manager
        wraps a second one (``with conn``) whose commit-or-rollback is a no-op on an
        autocommit connection, and the two cost ~20% of a one-statement claim's client
        CPU (py-spy). ``putconn`` still rolls back a connection left in a transaction and
        replaces a broken one.
        """
        breaker = self.breaker
        if breaker is not None and not breaker.allow():
            raise Unavailable()  # the database is unreachable: say so now, not in 10 s
        # What this call learns about the database, for the breaker (unknown until told).
        outcome: Outcome = "unknown"
        pool = pool or self.pool
        try:
            conn = self._getconn(timeout, pool)
            try:
                result = fn(conn)
                outcome = "answered"
                return result
            except pg_errors.ReadOnlySqlTransaction:
                conn.close()  # a standby now (a failover): the pool must not hand it out again
                raise
            finally:
                pool.putconn(conn)
        except CouponError:
            outcome = "answered"  # a domain error: the database answered
            raise
        except pg_errors.UniqueViolation as err:
            outcome = "answered"
            if err.diag.constraint_name == "coupons_pkey":
                raise CouponExists() from err
            if err.diag.constraint_name == "campaign_claims_pkey":
                raise CampaignClaimed() from err
            raise AlreadyClaimed() from err
        except pg_errors.CheckViolation as err:
            outcome = "answered"
            raise NoStock() from err
        except pg_errors.ForeignKeyViolation as err:
            outcome = "answered"
            raise CouponNotFound() from err
        except (pg_errors.QueryCanceled, pg_errors.LockNotAvailable) as err:
            outcome = "answered"
            raise Unavailable("service unavailable: the database timed out") from err
        except pg_errors.ReadOnlySqlTransaction as err:
            self._check_pool_soon()
            raise Unavailable("service unavailable: the database is read-only") from err
        except (pg_errors.SerializationFailure, pg_errors.DeadlockDetected) as err:
            outcome = "answered"
            raise Unavailable("service unavailable: too much contention") from err
        except _TRANSIENT as err:
            # A lost or refused connection is a failure; a pool timeout alone is no news
            # (an exhausted pool is not a dead database).
            outcome = "unknown" if isinstance(err, _POOL_REFUSALS) else "failed"
            self._check_pool_soon()
            raise Unavailable() from err
        except psycopg.Error as err:
            outcome = "answered"
            if _server_race(err):
                log.warning("the database refused a statement for a race of its own: %s", err)
                raise Unavailable(
                    "service unavailable: the database refused a concurrent update"
                ) from err
            log.exception("unexpected database error")
            raise InternalError() from err
        finally:
            if breaker is not None:
                breaker.record(outcome)

    def _getconn(self, timeout: float | None, pool: psycopg_pool.ConnectionPool[Conn]) -> Conn:
        """A pooled connection; with a suspect breaker, given up as soon as it opens."""
        breaker = self.breaker
        if breaker is None or not breaker.suspect:
            return pool.getconn(timeout)  # healthy: one wait, first come first served
        deadline = time.monotonic() + (pool.timeout if timeout is None else timeout)
        while True:
            left = deadline - time.monotonic()
            try:
                return pool.getconn(max(min(left, _SUSPECT_SLICE_S), 0.001))
            except psycopg_pool.PoolTimeout:
                if left <= _SUSPECT_SLICE_S or breaker.state == "open":
                    raise

    def _check_pool_soon(self) -> None:
        """After a connection error, have the pool replace its dead idle connections.

        Without this, every connection opened before a database restart fails once
        before the pool notices; with it, recovery takes one check. At most one check
        runs at a time, at most once a second.
        """
        now = time.monotonic()
        with self._check_lock:
            if now - self._last_check < 1.0:
                return
            self._last_check = now
        threading.Thread(target=self._check_pool, name="pool-check", daemon=True).start()

    def _check_pool(self) -> None:
        for pool in (self.pool, self.read_pool):
            if pool is None:
                continue
            try:
                pool.check()
            except Exception:  # a check that fails now is retried by the next error
                log.debug("pool check failed", exc_info=True)


def _open_pool(
    url: str,
    config: ServiceConfig,
    kwargs: dict[str, Any],
    name: str,
    breaker: CircuitBreaker | None = None,
) -> psycopg_pool.ConnectionPool[Conn]:
    # Last in, first out: a pool larger than the load keeps its hot connections.
    pool: psycopg_pool.ConnectionPool[Conn] = LifoConnectionPool(
        url,
        connection_class=ClaimConnection,
        min_size=config.pool_min,
        max_size=max(config.pool_max, config.pool_min),
        timeout=config.pool_timeout,
        kwargs=kwargs,
        # Give up a failed reconnection at once instead of backing off for minutes:
        # the pool grows again on demand as soon as a caller waits, so after a
        # database restart recovery is bounded by one connection attempt.
        reconnect_timeout=0,
        # A connection the pool could not open is a connection failure to the breaker.
        reconnect_failed=None if breaker is None else lambda _pool: breaker.connect_failed(),
        # A multi-host URL asking for the primary: never hand out a standby's connection.
        check=_writable if _wants_primary(url) else None,
        open=False,
        name=name,
    )
    if breaker is not None:
        breaker.on_recover = pool.check  # drop what the outage broke before the trial
    pool.open(wait=False)
    return pool


def _breaker(url: str, kwargs: dict[str, Any], config: ServiceConfig) -> CircuitBreaker | None:
    """The service's breaker, probing with a plain connection like the pool's own."""
    if config.breaker_threshold <= 0:
        return None
    probe_kwargs = {**kwargs, "application_name": f"{config.application_name}-probe"[:63]}

    def probe() -> None:
        psycopg.connect(url, **probe_kwargs).close()

    return CircuitBreaker(probe, threshold=config.breaker_threshold, probe_s=config.breaker_probe_s)
