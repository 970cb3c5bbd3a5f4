"""``coupon-chaos serve``: run the HTTP API on a database (embedded unless given a URL)."""

from __future__ import annotations

import argparse
import contextlib
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType

from coupon_core import CouponService, EmbeddedPostgres, ServiceConfig, available_strategies
from coupon_core.database import DatabaseError, DatabaseHandle, ExternalDatabase
from coupon_core.errors import Unavailable
from coupon_core.server import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT_S,
    Limits,
    RunningServer,
    ServerError,
    run_server,
    stop_signals,
)
from coupon_core.workers import ServerGroup, serve_processes
from experiments.cli_checks import UsageError, check_reachable, database_url, where
from experiments.errors import CommandError

NAME = "serve"
HELP = "serve the coupon HTTP API (starts an embedded PostgreSQL unless given a URL)"


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"port out of range 0..65535: {port}")
    return port


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an integer: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {value}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= 3600:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most 3600 s: {value:g}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--database-url",
        metavar="URL",
        default=None,
        help="PostgreSQL URL (default: $DATABASE_URL, else an embedded database)",
    )
    parser.add_argument(
        "--read-url",
        metavar="URL",
        default=None,
        help="send reads (GET) to this PostgreSQL, e.g. a standby (default: the database URL;"
        " one server process only)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--port", type=_port, default=3000, help="port to listen on (0: any free port)"
    )
    parser.add_argument(
        "--strategy",
        choices=available_strategies(),
        default="row_lock",
        help="claim strategy (default: row_lock)",
    )
    parser.add_argument(
        "--pool-size",
        type=_positive,
        default=20,
        metavar="N",
        help="database connections in the pool, per worker process (default: 20)",
    )
    defaults = ServiceConfig()
    parser.add_argument(
        "--pool-timeout",
        type=_seconds,
        default=defaults.pool_timeout,
        metavar="S",
        help="seconds a request waits for a pooled connection before its 503; while the"
        " database is unreachable the circuit breaker answers 503 at once"
        f" (default: {defaults.pool_timeout:g})",
    )
    parser.add_argument(
        "--connect-timeout",
        type=_seconds,
        default=defaults.connect_timeout,
        metavar="S",
        help="seconds to open one database connection, whole seconds, at least 1"
        f" (libpq's connect_timeout; default: {defaults.connect_timeout:g})",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="server processes sharing the port (SO_REUSEPORT), each with its own pool;"
        " one process is held to one core by the GIL; a worker that dies is restarted"
        " (default: 1, in this process); SIGHUP replaces them one by one without failing"
        " a request",
    )
    parser.add_argument(
        "--request-timeout",
        type=_seconds,
        default=DEFAULT_REQUEST_TIMEOUT_S,
        metavar="S",
        help="seconds a request's headers and body may take to arrive; past it a 408"
        f" (a close if not a byte came), the connection freed (default: {DEFAULT_REQUEST_TIMEOUT_S:g})",
    )
    parser.add_argument(
        "--max-connections",
        type=_positive,
        default=DEFAULT_MAX_CONNECTIONS,
        metavar="N",
        help="open connections per server process; one beyond gets a 503 and is closed"
        f" (default: {DEFAULT_MAX_CONNECTIONS})",
    )


def _check_host(host: str) -> None:
    try:
        socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError):
        raise UsageError(
            f"--host {host}: not an address (nor a name) this machine can use"
        ) from None


def _database(url: str | None) -> DatabaseHandle:
    if url:
        print(f"database: {where(url)}", flush=True)
        return ExternalDatabase(url)
    embedded = EmbeddedPostgres.create()
    try:
        embedded.start()
    except DatabaseError as err:
        embedded.close()
        raise CommandError(f"cannot start the embedded database: {err}") from err
    print(f"database: embedded PostgreSQL at {embedded.url}", flush=True)
    return embedded


def _serve_in_process(args: argparse.Namespace, url: str) -> None:
    try:
        service = CouponService.connect(
            url,
            read_url=args.read_url,
            strategy=args.strategy,
            pool_max=args.pool_size,
            pool_min=min(4, args.pool_size),
            pool_timeout=args.pool_timeout,
            connect_timeout=args.connect_timeout,
        )
    except Unavailable as err:
        raise CommandError(f"cannot reach the database at {where(url)}") from err

    def ready(server: RunningServer) -> None:
        print(f"serving on {server.url} (strategy {args.strategy})", flush=True)

    def hup(signum: int, frame: FrameType | None) -> None:
        # SIGHUP's default would kill the server: one process has nothing to roll.
        print("SIGHUP ignored: a rolling restart needs --workers 2 or more", flush=True)

    previous = signal.signal(signal.SIGHUP, hup)
    try:
        run_server(service, args.host, args.port, on_ready=ready, limits=_limits(args))
    except ServerError as err:
        raise CommandError(str(err)) from err
    finally:
        signal.signal(signal.SIGHUP, previous)
        service.close()


def _limits(args: argparse.Namespace) -> Limits:
    return Limits(args.request_timeout, args.max_connections)


@contextlib.contextmanager
def _hangups() -> Iterator[threading.Event]:
    """An event SIGHUP sets (a rolling restart asked for); the old handler comes back after."""
    asked = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        asked.set()

    previous = signal.signal(signal.SIGHUP, handle)
    try:
        yield asked
    finally:
        signal.signal(signal.SIGHUP, previous)


def _serve_processes(args: argparse.Namespace, url: str) -> None:
    # Signals are ours from before the workers start: a SIGTERM during startup must
    # not kill this process and leave them behind.
    with stop_signals() as stop, _hangups() as hangup:
        try:
            group = serve_processes(
                url,
                processes=args.workers,
                host=args.host,
                port=args.port,
                strategy=args.strategy,
                pool_size=args.pool_size,
                pool_timeout=args.pool_timeout,
                connect_timeout=args.connect_timeout,
                limits=_limits(args),
                # A worker that dies is replaced (restarts counted and logged on stderr).
                supervise=True,
            )
        except Unavailable as err:
            raise CommandError(f"cannot reach the database at {where(url)}") from err
        except ServerError as err:
            raise CommandError(str(err)) from err
        with group:
            print(
                f"serving on {group.url} (strategy {args.strategy}, {args.workers} worker processes)",
                flush=True,
            )
            print(f"worker pids: {' '.join(map(str, group.pids))}", flush=True)
            try:
                # A timed wait, so the signal handler runs promptly and a dead worker ends us.
                while not stop.wait(0.5):
                    group.check()
                    if hangup.is_set():
                        hangup.clear()
                        _roll(group)
            except ServerError as err:
                raise CommandError(str(err)) from err
            if group.restarts:
                print(f"worker restarts: {group.restarts}", flush=True)


def _roll(group: ServerGroup) -> None:
    # In the main thread: a SIGTERM meanwhile is seen once the roll is done (bounded:
    # each step by the worker start-up and stop timeouts).
    print("rolling restart: replacing the workers one by one", flush=True)
    started = time.monotonic()
    made = group.rolling_restart()
    pairs = ", ".join(f"{r.old_pid} -> {r.new_pid}" for r in made)
    print(f"rolling restart done in {time.monotonic() - started:.2f}s: {pairs}", flush=True)
    print(f"worker pids: {' '.join(map(str, group.pids))}", flush=True)


def run(args: argparse.Namespace) -> int:
    # Checked before anything starts: an address that is none, a URL that does not parse
    # or does not answer.
    _check_host(args.host)
    if args.read_url and args.workers != 1:
        raise UsageError("--read-url works with one server process (--workers 1) only")
    url = database_url(args.database_url)
    if url is not None:
        check_reachable(url)
    database = _database(url)
    try:
        if args.workers == 1:
            _serve_in_process(args, database.url)
        else:
            _serve_processes(args, database.url)
        print("stopped", flush=True)
    finally:
        database.close()
    return 0
