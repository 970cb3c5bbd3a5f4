"""The lab: the environment one experiment runs in, opened and closed as one context.

``open_lab(...)`` provides a database URL (given, ``DATABASE_URL``, or an embedded
PostgreSQL it starts and stops itself), a ``CouponService`` for the chosen claim
strategy with its pool sized for the run, a client for the chosen layer (for
``"http"`` the API served by uvicorn on a free loopback port), a direct psycopg
connection for reading the final state, and a run-unique coupon prefix. On exit
nothing it started is left running: client, server, service pool, connection,
database.

With ``target=URL`` the HTTP client speaks to a server the lab did not start (any
implementation of the contract, anywhere): no service, no server, and no database
unless ``database_url`` (the target's own) or ``TARGET_DATABASE_URL`` names it.
Without it the tables cannot be read, and every check that needs them is skipped with
the reason
(``FinalState.unavailable``), never passed. ``cleanup=True`` deletes the run's own
rows (its prefix, nothing else) on exit.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import os
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, Protocol, cast

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from coupon_core import CouponService, ServiceConfig
from coupon_core.database import DatabaseHandle, EmbeddedPostgres, provision
from experiments.checks import FinalState, like_prefix, read_state
from experiments.checks_leaks import pool_idle
from experiments.clients import Client, HttpClient, ServiceClient
from experiments.errors import LabError
from experiments.history import History, Op
from experiments.plans import Plan
from experiments.run_record import announce, common_params, run_prefix
from experiments.runner import PhaseLabel, RunReport, run_plan
from experiments.spec import LAYERS as SPEC_LAYERS

if TYPE_CHECKING:
    from coupon_core.cluster import ReplicatedCluster as Cluster
    from coupon_core.server import Limits

__all__ = [
    "HTTP_TARGET",
    "LAYERS",
    "DatabaseKind",
    "Lab",
    "LabError",
    "Layer",
    "Stoppable",
    "Through",
    "announce",
    "check_target",
    "common_params",
    "delete_run_rows",
    "http_target",
    "open_lab",
    "run_prefix",
]

Layer = Literal["service", "http"]
DatabaseKind = Literal["shared", "own", "private", "cluster"]


class Stoppable(Protocol):
    """What stands between the service and the database (a proxy): the lab stops it last.
    (A fault's windows are the pipeline's to read: the lab knows no fault.)"""

    def stop(self) -> None: ...


#: (database or target URL, the cluster if any, seed) -> (the URL to use, the thing, started).
Through = Callable[[str, "Cluster | None", int], tuple[str, Stoppable]]
LAYERS: tuple[Layer, ...] = cast("tuple[Layer, ...]", SPEC_LAYERS)

#: Connections a pool may hold: enough that claims queue in PostgreSQL's row lock,
#: not in the pool, yet few enough that scenarios running side by side stay below
#: max_connections (700 on the embedded server, often 100 elsewhere).
DEFAULT_POOL_CAP = 32


#: The base URL the HTTP layer speaks to instead of a server the lab starts (None: start
#: one). A seam for tests (``http_target``): the server there must use the lab's database.
HTTP_TARGET: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "HTTP_TARGET", default=None
)


@contextlib.contextmanager
def http_target(url: str) -> Iterator[None]:
    """Within the block, labs on the HTTP layer talk to ``url`` instead of their own server."""
    token = HTTP_TARGET.set(url)
    try:
        yield
    finally:
        HTTP_TARGET.reset(token)


#: The environment variable that names a target's database (never DATABASE_URL).
TARGET_DATABASE_ENV = "TARGET_DATABASE_URL"
#: Why the tables are not read against a target given without its database.
NO_DATABASE = "no database access: the target was given without --database-url"


@dataclass
class Lab:
    """What a scenario needs; see ``open_lab``."""

    #: "" against a target given without its database.
    database_url: str
    layer: Layer
    strategy: str
    prefix: str
    service_or_none: CouponService | None
    client: Client
    conn_or_none: psycopg.Connection[Any] | None
    op_timeout_s: float
    #: The database, when the lab started it (faults may restart it).
    database: DatabaseHandle | None = None
    #: The HTTP server, when ``layer == "http"`` and the lab started it.
    server: Any = None
    history: History = field(default_factory=History)
    #: The external server's URL, when the lab runs against one (through the proxy in
    #: front of it, when there is one).
    target: str | None = None
    #: The database itself, when ``database_url`` is a proxy in front of it.
    backend_url: str = ""
    #: The replicated cluster the lab started.
    cluster: Cluster | None = None
    #: What stands between the service (or the client) and the database (or target).
    middle: Stoppable | None = None
    #: The database is the run's own (``database="private"``): nothing else writes there.
    isolated: bool = False
    _services: contextlib.ExitStack | None = field(default=None, repr=False)

    def close_service(self) -> None:
        """Close the client, the server and the service now (the database stays up): the
        leak check counts what they left behind. Idempotent; the context's exit does it
        too."""
        if self._services is not None:
            self._services.close()

    @property
    def service(self) -> CouponService:
        """The in-process service; LabError against a target (there is none)."""
        if self.service_or_none is None:
            raise LabError(f"no in-process service against the target {self.target}")
        return self.service_or_none

    @property
    def conn(self) -> psycopg.Connection[Any]:
        """The lab's own connection; LabError against a target without its database."""
        if self.conn_or_none is None:
            raise LabError(NO_DATABASE)
        return self.conn_or_none

    @conn.setter
    def conn(self, conn: psycopg.Connection[Any]) -> None:
        self.conn_or_none = conn

    def setup(self, plan: Plan) -> list[Op]:
        """Create the plan's setup coupons through the client (phase ``setup``)."""
        ops = []
        for i, (name, amount) in enumerate(plan.setup):
            op = Op(
                op_id=-(i + 1), worker=-1, kind="create", coupon=name, amount=amount, phase="setup"
            )
            self.client.invoke(op, self.history)
            # A 201 outside the contract (a body, say) still created the coupon: the run
            # goes on, and contract_kept reports the answer.
            created = op.result == "contract_violation" and op.http_status == 201
            if op.result != "ok" and not created:
                raise LabError(f"setup: create {name} ended {op.result}: {op.message}")
            ops.append(op)
        return ops

    def run(
        self, plan: Plan, *, phase: PhaseLabel = "load", run_timeout_s: float = 60.0
    ) -> RunReport:
        return run_plan(
            plan,
            self.client,
            self.history,
            phase=phase,
            run_timeout_s=run_timeout_s,
            op_timeout_s=self.op_timeout_s,
        )

    def state(self) -> FinalState:
        """The run's coupons and claims, read from the tables (only this run's prefix).

        Without database access: an empty state that says why (its checks are skipped).
        """
        if self.conn_or_none is None:
            return FinalState(prefix=self.prefix, unavailable=NO_DATABASE)
        return read_state(self.conn_or_none, self.prefix)

    def cleanup(self) -> dict[str, Any]:
        """Delete this run's own claims and coupons (by its prefix, nothing else)."""
        if self.conn_or_none is None:
            return {"cleanup": f"skipped: {NO_DATABASE}"}
        return delete_run_rows(self.conn_or_none, self.prefix)


def delete_run_rows(conn: psycopg.Connection[Any], prefix: str) -> dict[str, Any]:
    """Delete the claims, then the coupons, whose coupon name starts with ``prefix``."""
    if not prefix:
        raise LabError("cleanup deletes only its own run's rows: give a non-empty prefix")
    pattern = like_prefix(prefix)
    with conn.transaction():
        claims = conn.execute("DELETE FROM claims WHERE coupon_name LIKE %s", (pattern,)).rowcount
        coupons = conn.execute("DELETE FROM coupons WHERE name LIKE %s", (pattern,)).rowcount
    return {"cleanup": "done", "deleted_claims": claims, "deleted_coupons": coupons}


def _service_config(strategy: str, pool_max: int, op_timeout_s: float) -> ServiceConfig:
    if strategy.startswith("mutant:"):
        # A mutant named in a notebook or by -p works without a hidden install() call.
        from experiments import mutants

        names = mutants.install()
        if strategy not in names:
            raise ValueError(f"unknown mutant strategy {strategy!r}; have {', '.join(names)}")
    # The service call cannot be interrupted from outside: its bound is the pool wait
    # and the statement timeout, both derived from the per-operation timeout.
    return ServiceConfig(
        strategy=strategy,
        pool_min=min(4, pool_max),
        pool_max=pool_max,
        pool_timeout=min(op_timeout_s, 10.0),
        statement_timeout_ms=int(op_timeout_s * 1000),
    )


@contextlib.contextmanager
def open_lab(
    *,
    scenario: str = "lab",
    layer: str = "service",
    strategy: str = "row_lock",
    database_url: str | None = None,
    workers: int = 10,
    op_timeout_s: float = 10.0,
    pool_max: int | None = None,
    prefix: str | None = None,
    service_overrides: Mapping[str, Any] | None = None,
    server_workers: int = 0,
    target: str | None = None,
    cleanup: bool = False,
    database: DatabaseKind = "shared",
    cluster_standbys: int = 1,
    cluster_mode: str = "async",
    through: Through | None = None,
    read_from_standby: bool = False,
    seed: int = 0,
    server_limits: Limits | None = None,
) -> Iterator[Lab]:
    """Open everything an experiment needs, and close it all on exit (see the module).

    The only place that starts databases, servers and clusters for an experiment.
    ``database``: ``"shared"`` (``database_url``, else ``DATABASE_URL``, else an
    embedded PostgreSQL of the lab's own), ``"own"`` (a fresh embedded cluster whatever
    the URLs say: a fault that stops the database must not stop one others share),
    ``"private"`` (a database of the run's own created on the shared server, dropped on
    exit; the shared one where CREATE DATABASE is refused), ``"cluster"`` (a replicated cluster of ``cluster_standbys`` standbys in
    ``cluster_mode``, unless ``database_url`` names one: then that multi-host URL).
    ``through(url, cluster, seed)`` puts something (a proxy) between the service and the
    database: it returns the URL the service uses and the thing, started; it stops last.
    ``service_overrides`` replaces fields of the service's config (fault scenarios:
    a run-unique ``application_name``, a short ``pool_timeout``, lock timeouts);
    ``read_from_standby`` sends the service's gets to the cluster's first standby.
    ``server_workers`` (HTTP layer): serve from that many supervised worker
    processes (``coupon_core.workers``) instead of a thread of this process; their
    backends are named ``<application_name>-<pid>``. ``server_limits``: the request
    deadline and connection bound of the server it starts (None: the server's defaults).
    ``target``, ``cleanup``: see the module.
    """
    if layer not in LAYERS:
        raise LabError(f"unknown layer {layer!r}; choose one of {', '.join(LAYERS)}")
    if target is not None:
        with _target_lab(
            scenario=scenario,
            layer=layer,
            strategy=strategy,
            target=target,
            database_url=database_url,
            workers=workers,
            op_timeout_s=op_timeout_s,
            prefix=prefix,
            cleanup=cleanup,
            through=through,
            seed=seed,
        ) as lab:
            yield lab
        return
    pool = pool_max or max(2, min(workers, DEFAULT_POOL_CAP))
    with contextlib.ExitStack() as stack:
        url = database_url or os.environ.get("DATABASE_URL") or None
        handle: DatabaseHandle | None = None
        cluster: Cluster | None = None
        isolated = False
        if database == "cluster" and database_url is None:
            from coupon_core.database import replicated

            cluster = replicated(standbys=cluster_standbys, mode=cluster_mode)
            stack.callback(cluster.close)
            url = cluster.url
        elif database == "cluster":
            url = database_url
        elif database == "private":
            # A database of the run's own on the shared server: whole-table checks exact.
            if url is None:
                handle = provision(None)
                stack.callback(handle.close)
                url = handle.url
            url, isolated = stack.enter_context(private_database(url))
        elif database == "own" or url is None:
            handle = EmbeddedPostgres.create() if database == "own" else provision(None)
            stack.callback(handle.close)
            if database == "own":
                handle.start()
            url = handle.url
        assert url is not None
        backend_url, middle = url, None
        if through is not None:
            url, middle = through(backend_url, cluster, seed)  # started: its URL needs its port
            stack.callback(middle.stop)
        services = stack.enter_context(contextlib.ExitStack())
        config = _service_config(strategy, pool, op_timeout_s)
        if service_overrides:
            config = dataclasses.replace(config, **service_overrides)
        read_url = cluster.standby_nodes()[0].url if read_from_standby and cluster else None
        service = CouponService.connect(url, config, read_url=read_url)
        services.callback(service.close)
        server: Any = None
        client: Client
        if layer == "http" and server_workers > 0:
            from coupon_core.workers import serve_processes

            server = serve_processes(
                url,
                processes=server_workers,
                strategy=strategy,
                pool_size=pool,
                apply_schema=False,  # the lab's service applied it
                supervise=True,
                application_name=config.application_name,
                limits=server_limits,
            )
            services.callback(server.stop)
            client = HttpClient(server.url, timeout_s=op_timeout_s)
        elif layer == "http" and (seam := HTTP_TARGET.get()) is not None:
            # A server the lab did not start (a test double); it serves the same database.
            client = HttpClient(seam, timeout_s=op_timeout_s)
        elif layer == "http":
            from coupon_core.server import serve_in_thread

            server = serve_in_thread(service, host="127.0.0.1", port=0, limits=server_limits)
            services.callback(server.stop)
            client = HttpClient(server.url, timeout_s=op_timeout_s)
        else:
            client = ServiceClient(service)
        services.callback(client.close)
        conn = psycopg.connect(url, autocommit=True, connect_timeout=10)
        stack.enter_context(conn)
        lab = Lab(
            database_url=url,
            layer=layer,
            strategy=strategy,
            prefix=prefix or run_prefix(scenario),
            service_or_none=service,
            client=client,
            conn_or_none=conn,
            op_timeout_s=op_timeout_s,
            database=handle,
            server=server,
            backend_url=backend_url,
            cluster=cluster,
            middle=middle,
            isolated=isolated,
            _services=services,
        )
        yield lab
        if cleanup:
            lab.cleanup()


@contextlib.contextmanager
def private_database(url: str) -> Iterator[tuple[str, bool]]:
    """A database of this run's own on the same server, so whole-table fingerprints are exact.

    Falls back to ``url`` itself (and prefix-scoped fingerprints) where CREATE DATABASE
    is not allowed; yields (url, isolated).
    """
    name = f"coupon_lab_ib_{uuid.uuid4().hex[:10]}"
    try:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.Error:
        yield url, False
        return
    params = conninfo_to_dict(url)
    params["dbname"] = name
    try:
        yield make_conninfo("", **params), True
    finally:
        with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def check_target(target: str) -> str:
    from urllib.parse import urlsplit

    parts = urlsplit(target)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise LabError(f"target must be an http(s)://host:port URL, not {target!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise LabError(f"target must be the server's root URL (no path or query): {target!r}")
    return target.rstrip("/")


@contextlib.contextmanager
def _target_lab(
    *,
    scenario: str,
    layer: str,
    strategy: str,
    target: str,
    database_url: str | None,
    workers: int,
    op_timeout_s: float,
    prefix: str | None,
    cleanup: bool,
    through: Through | None,
    seed: int,
) -> Iterator[Lab]:
    # The target's database: given, or TARGET_DATABASE_URL (how the suite passes it to
    # a notebook's kernel); never DATABASE_URL, which may name another database.
    database_url = database_url or os.environ.get(TARGET_DATABASE_ENV) or None
    if layer != "http":
        raise LabError(f"a target is reached over HTTP: layer must be 'http', not {layer!r}")
    target = check_target(target)
    with contextlib.ExitStack() as stack:
        via, middle = target, None
        if through is not None:
            # In front of the target's host:port (a proxy): the client speaks to it.
            via, middle = through(target, None, seed)
            stack.callback(middle.stop)
        services = stack.enter_context(contextlib.ExitStack())
        client = HttpClient(via, timeout_s=op_timeout_s)
        services.callback(client.close)
        conn = None
        if database_url:
            conn = psycopg.connect(database_url, autocommit=True, connect_timeout=10)
            stack.enter_context(conn)
        lab = Lab(
            database_url=database_url or "",
            layer="http",
            strategy=strategy,
            prefix=prefix or run_prefix(scenario),
            service_or_none=None,
            client=client,
            conn_or_none=conn,
            op_timeout_s=op_timeout_s,
            target=via,
            middle=middle,
            _services=services,
        )
        yield lab
        if cleanup:
            lab.cleanup()


def pool_stats_when_idle(service: CouponService, timeout_s: float = 5.0) -> dict[str, int]:
    # A connection the pool is still opening (it grows in the background) or an HTTP
    # request still unwinding shows as "in use" for a moment: give it that moment.
    deadline = time.monotonic() + timeout_s
    stats = service.pool_stats()
    while not pool_idle(stats) and time.monotonic() < deadline:
        time.sleep(0.05)
        stats = service.pool_stats()
    return stats
