"""One worker process of a server group: serve the API on the group's slot until told to stop.

``DATABASE_URL=URL python -m coupon_core.workers --port P [...]`` (the group starts it
so) opens a pool of exactly ``--pool-size`` connections, serves the inherited listening
socket (``--listen-fd``) with the request deadline and connection bound it is given,
prints ``ready <pid>`` once it accepts, and serves until SIGTERM or SIGINT, then drains
(``coupon_core.connections``) and exits 0. It stops itself when its parent is gone
(``--parent-pid``): an orphan would keep a share of the port's connections. Its
backends are named ``<--application-name>-<pid>`` in pg_stat_activity, and every
response carries ``x-coupon-worker: <pid>``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence

import psycopg

from coupon_core.redact import redact_text
from coupon_core.server import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT_S,
    Limits,
    RunningServer,
    ServerError,
    run_server,
)
from coupon_core.service import CouponService, ServiceConfig
from coupon_core.strategies import available_strategies
from coupon_core.worker_process import DEFAULT_POOL_SIZE, STARTUP_TIMEOUT_S

__all__ = ["WORKER_HEADER", "main"]

#: The response header naming the worker process that answered.
WORKER_HEADER = "x-coupon-worker"
_PARENT_POLL_S = 0.5


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m coupon_core.workers",
        description="One worker of a ServerGroup: serve the API on a SO_REUSEPORT port.",
    )
    p.add_argument(
        "--database-url",
        default=None,
        metavar="URL",
        help="default: $DATABASE_URL (the group passes it so: argv is visible to every user)",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--strategy", choices=available_strategies(), default="row_lock")
    p.add_argument("--pool-size", type=int, default=DEFAULT_POOL_SIZE, metavar="N")
    p.add_argument("--pool-timeout", type=float, default=ServiceConfig.pool_timeout, metavar="S")
    p.add_argument(
        "--connect-timeout", type=float, default=ServiceConfig.connect_timeout, metavar="S"
    )
    p.add_argument(
        "--parent-pid", type=int, default=None, metavar="PID", help="stop when PID is gone"
    )
    p.add_argument(
        "--listen-fd",
        type=int,
        default=None,
        metavar="FD",
        help="serve this inherited listening socket (the group's slot) instead of binding",
    )
    p.add_argument("--request-timeout", type=float, default=DEFAULT_REQUEST_TIMEOUT_S, metavar="S")
    p.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS, metavar="N")
    p.add_argument(
        "--application-name",
        default=ServiceConfig.application_name,
        metavar="NAME",
        help="backends are named NAME-<pid> in pg_stat_activity",
    )
    return p


def _stop_with_parent(parent: int) -> None:
    # An orphaned worker would keep the port and, with SO_REUSEPORT, take a share of
    # the connections of the next group started on it.
    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one worker: open a pool of exactly ``--pool-size``, serve, say ``ready <pid>``."""
    parser = _parser()
    args = parser.parse_args(argv)
    database_url = args.database_url or os.environ.get("DATABASE_URL")
    if not database_url:
        parser.error("no database: give --database-url or set DATABASE_URL")
    try:
        limits = Limits(args.request_timeout, args.max_connections)
    except ValueError as err:
        parser.error(str(err))
    sock = None
    if args.listen_fd is not None:
        try:
            sock = socket.socket(fileno=args.listen_fd)
        except OSError as err:
            parser.error(f"--listen-fd {args.listen_fd}: {err.strerror}")
    config = ServiceConfig(
        strategy=args.strategy,
        pool_min=args.pool_size,
        pool_max=args.pool_size,
        pool_timeout=args.pool_timeout,
        connect_timeout=args.connect_timeout,
        apply_schema=False,  # the parent applied it
        application_name=f"{args.application_name}-{os.getpid()}"[:63],
    )

    def ready(server: RunningServer) -> None:
        if args.parent_pid is not None:
            _stop_with_parent(args.parent_pid)  # now SIGTERM takes run_server's clean path
        print(f"ready {os.getpid()}", flush=True)

    try:
        # The pool retries a refused connection quietly until its wait times out;
        # one plain connection fails at once, with the reason.
        psycopg.connect(database_url, connect_timeout=5).close()
        with CouponService.connect(database_url, config) as service:
            service.pool.wait(timeout=STARTUP_TIMEOUT_S)  # all K connections, before ready
            run_server(
                service,
                args.host,
                args.port,
                on_ready=ready,
                reuse_port=True,
                headers=[(WORKER_HEADER, str(os.getpid()))],
                limits=limits,
                sock=sock,
            )
    except (psycopg.Error, ServerError) as err:  # PoolTimeout is a psycopg.Error
        reason = redact_text(str(err), database_url)
        print(f"worker {os.getpid()}: {reason}", file=sys.stderr, flush=True)
        return 1
    return 0
