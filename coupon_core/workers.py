"""Serve the API from several processes on one port: the group (parent) and its workers.

One uvicorn process is held to one core by the GIL: about 350 us of CPU per claim,
2400-2500 claims/s with the process at 85-87% CPU (measured). So the group starts N
worker processes, each with its own pool, each serving one of N listening sockets on
the same port with SO_REUSEPORT (2 processes on 2 cores: 3370-3460 claims/s; 3 were
no better). The concepts, one module each:

    coupon_core.slots           the group's listening sockets, one per worker, which
                                outlive their workers
    coupon_core.worker_process  the parent's handle on a worker: start it, its ready line
    coupon_core.worker_main     the worker process itself (``python -m coupon_core.workers``)
    coupon_core.group           ServerGroup: supervision (a worker that exits is
                                replaced) and rolling restarts (SIGHUP to ``serve``)

Parent: ``serve_processes(url, processes=N) -> ServerGroup``. Worker:
``DATABASE_URL=URL python -m coupon_core.workers --port P [...]``, which prints
``ready <pid>`` once it accepts and serves until SIGTERM or SIGINT. The URL goes in
the environment, never on the command line. A worker's backends are named
``coupon-service-<pid>`` in pg_stat_activity (``--application-name`` changes the
prefix), and every response carries ``x-coupon-worker: <pid>``.
"""

from __future__ import annotations

import sys

import psycopg

from coupon_core import schema
from coupon_core.errors import Unavailable
from coupon_core.group import MAX_RESTARTS, Restart, ServerGroup
from coupon_core.server import Limits
from coupon_core.service import ServiceConfig
from coupon_core.slots import close_slots, open_slots
from coupon_core.strategies import get_strategy
from coupon_core.worker_main import WORKER_HEADER, main
from coupon_core.worker_process import (
    DEFAULT_POOL_SIZE,
    STARTUP_TIMEOUT_S,
    spawn,
    worker_argv,
    worker_env,
)

__all__ = ["WORKER_HEADER", "Restart", "ServerGroup", "serve_processes"]


def _ensure_schema(database_url: str) -> None:
    # Once here, so the workers open their pools without racing to create tables.
    try:
        schema.apply_schema(database_url)
    except psycopg.Error as err:
        raise Unavailable("service unavailable: cannot reach the database") from err


def serve_processes(
    database_url: str,
    *,
    processes: int,
    host: str = "127.0.0.1",
    port: int = 0,
    strategy: str = "row_lock",
    pool_size: int = DEFAULT_POOL_SIZE,
    startup_timeout: float = STARTUP_TIMEOUT_S,
    apply_schema: bool = True,
    supervise: bool = False,
    application_name: str | None = None,
    max_restarts: int = MAX_RESTARTS,
    pool_timeout: float = ServiceConfig.pool_timeout,
    connect_timeout: float = ServiceConfig.connect_timeout,
    limits: Limits | None = None,
) -> ServerGroup:
    """Start ``processes`` workers on one port, each with ``pool_size`` connections.

    Returns once every worker accepts connections.

    The parent listens one SO_REUSEPORT socket per worker (a slot, ``coupon_core.slots``)
    and the worker inherits it; the group keeps every slot open until ``stop()``, so a
    replacement serves the same queue. With ``port=0`` the kernel picks the port.
    ``limits``: each worker's request deadline and connection bound.
    ``apply_schema=False``: the caller vouches for the schema. ``supervise``: replace
    a worker that exits (see the module), at most ``max_restarts`` times.
    ``application_name``: the prefix of the workers' backend names (``<name>-<pid>``).

    Raises Unavailable if the schema cannot be applied, ServerError if the port is
    taken (by any server, SO_REUSEPORT or not) or a worker does not start (the others
    are stopped first).
    """
    if processes < 1 or pool_size < 1:
        raise ValueError(f"need processes >= 1 and pool_size >= 1: {processes}, {pool_size}")
    get_strategy(strategy)  # an unknown name fails here, not once per worker
    if apply_schema:
        _ensure_schema(database_url)
    limits = limits or Limits()
    slots = open_slots(host, port, processes)
    bound = int(slots[0].getsockname()[1])
    argv = worker_argv(host, bound, strategy, pool_size)
    argv += ["--pool-timeout", str(pool_timeout), "--connect-timeout", str(connect_timeout)]
    argv += ["--request-timeout", str(limits.request_timeout_s)]
    argv += ["--max-connections", str(limits.max_connections)]
    if application_name is not None:
        argv += ["--application-name", application_name]
    env = worker_env(database_url)
    try:
        workers = spawn(argv, env, slots)
    except BaseException:
        close_slots(slots)
        raise
    group = ServerGroup(
        workers,
        host,
        bound,
        argv,
        env,
        startup_timeout=startup_timeout,
        max_restarts=max_restarts,
        slots=slots,
    )
    try:
        group.wait_ready(startup_timeout)
    except BaseException:
        group.stop()
        raise
    if supervise:
        group.supervise()
    return group


if __name__ == "__main__":
    sys.exit(main())
