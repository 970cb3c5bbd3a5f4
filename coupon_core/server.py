"""Serve the HTTP API with uvicorn: in a background thread (the lab) or blocking (the CLI)."""

from __future__ import annotations

import contextlib
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType, TracebackType
from typing import Self

import uvicorn

from coupon_core.api import create_app
from coupon_core.connections import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT_S,
    protocol_class,
)
from coupon_core.errors import ServerError
from coupon_core.service import CouponService

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "Limits",
    "RunningServer",
    "Served",
    "ServerError",
    "accepts_connections",
    "bind_socket",
    "run_server",
    "serve_in_thread",
    "stop_signals",
]

# A 500-client loopback stampede connects all at once; the default backlog (2048 in
# uvicorn, capped by net.core.somaxconn) must not drop SYNs, which clients would see
# as one-second retransmit stalls.
BACKLOG = 4096
STARTUP_TIMEOUT_S = 15.0
# Bounded shutdown: in-flight requests get this long to finish (each service call is
# itself bounded by the pool timeout), then connections are cut.
GRACEFUL_SHUTDOWN_S = 5


@dataclass(frozen=True)
class Limits:
    """What a client may hold (coupon_core.connections): a request's head and body must
    arrive within ``request_timeout_s``; at most ``max_connections`` are open."""

    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS

    def __post_init__(self) -> None:
        if not 0 < self.request_timeout_s <= 3600 or self.max_connections < 1:
            raise ValueError(
                "need 0 < request_timeout_s <= 3600 and max_connections >= 1:"
                f" {self.request_timeout_s}, {self.max_connections}"
            )


class Served:
    """Something serving the API at ``host:port``; leaving a ``with`` block stops it."""

    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def stop(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class RunningServer(Served):
    """A uvicorn server running in a daemon thread; ``stop()`` is bounded and idempotent."""

    def __init__(self, server: uvicorn.Server, thread: threading.Thread, host: str, port: int):
        self._server = server
        self._thread = thread
        self.host = host
        self.port = port
        self._stop_lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def stop(self, timeout: float = GRACEFUL_SHUTDOWN_S + 5.0) -> None:
        """Shut down gracefully; cut connections if that takes longer than ``timeout``."""
        with self._stop_lock:
            if not self._thread.is_alive():
                return
            self._server.should_exit = True
            self._thread.join(timeout)
            if self._thread.is_alive():
                self._server.force_exit = True
                self._thread.join(5.0)


def _config(
    service: CouponService,
    host: str,
    port: int,
    log_level: str,
    headers: list[tuple[str, str]] | None = None,
    limits: Limits | None = None,
) -> uvicorn.Config:
    limits = limits or Limits()
    return uvicorn.Config(
        create_app(service),
        host=host,
        port=port,
        backlog=BACKLOG,
        access_log=False,  # a stampede would spend its time formatting log lines
        log_level=log_level,
        lifespan="on",
        # httptools parses HTTP/1.1 in C; uvloop runs the event loop on libuv. With the
        # raw ASGI app, server CPU per claim request fell from 238-262 to 199-221 us in
        # one bench run each (benchmarks/README.md). The protocol is uvicorn's httptools
        # one with request deadlines, a connection bound and a draining shutdown.
        http=protocol_class(
            request_timeout_s=limits.request_timeout_s, max_connections=limits.max_connections
        ),
        loop="uvloop",
        # Served on loopback to the lab's own clients: no X-Forwarded-* to trust, and
        # one middleware layer less per request.
        proxy_headers=False,
        timeout_keep_alive=30,  # keep-alive on: load clients reuse their connections
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S,
        headers=headers,  # extra response headers (a worker names itself)
    )


def bind_socket(host: str, port: int, *, reuse_port: bool = False) -> socket.socket:
    """A TCP socket bound to ``host:port``, not yet listening; ServerError if it cannot be."""
    # Bound here, not by uvicorn, so port 0 yields the kernel's choice before startup.
    # proto=IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted sockets only when
    # the proto says TCP, and accepted sockets copy it from here. Without it, Nagle
    # holds every response body behind its headers for a delayed ACK (44 ms a request
    # on a keep-alive connection, measured).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    if reuse_port:
        # Worker processes (coupon_core.workers) each listen on the same port; the
        # kernel spreads new connections over their listeners by a hash of the
        # connection's addresses. Every socket on the port must set it, ours included.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    try:
        sock.bind((host, port))
    except OSError as err:
        sock.close()
        raise ServerError(f"cannot listen on {host}:{port}: {err.strerror}") from err
    return sock


def accepts_connections(host: str, port: int) -> bool:
    """Whether a server accepts TCP connections on ``host:port`` now (one try, 1 s)."""
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1.0):
        return True
    return False


def serve_in_thread(
    service: CouponService,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    log_level: str = "warning",
    startup_timeout: float = STARTUP_TIMEOUT_S,
    reuse_port: bool = False,
    headers: list[tuple[str, str]] | None = None,
    limits: Limits | None = None,
    sock: socket.socket | None = None,
) -> RunningServer:
    """Serve the API for ``service`` in a background thread; returns once it accepts.

    ``reuse_port`` lets other processes listen on the same port (SO_REUSEPORT);
    ``headers`` are added to every response; ``limits`` bound what clients hold.
    ``sock``: a bound (maybe listening) socket to serve instead of binding ``host:port``
    (a worker's, inherited from its group); it is closed when the server stops.
    """
    if sock is None:
        sock = bind_socket(host, port, reuse_port=reuse_port)
    bound_port = int(sock.getsockname()[1])
    server = uvicorn.Server(_config(service, host, bound_port, log_level, headers, limits))
    failure: list[BaseException] = []

    def main() -> None:
        try:
            server.run(sockets=[sock])
        except BaseException as err:  # reported to the starting thread below
            failure.append(err)
        finally:
            sock.close()

    thread = threading.Thread(target=main, name=f"uvicorn-{bound_port}", daemon=True)
    thread.start()
    running = RunningServer(server, thread, host, bound_port)
    deadline = time.monotonic() + startup_timeout
    while not (server.started and accepts_connections(host, bound_port)):
        if not thread.is_alive():
            raise ServerError(f"server failed to start: {failure[0] if failure else 'exited'}")
        if time.monotonic() > deadline:
            running.stop()
            raise ServerError(f"server did not start within {startup_timeout:.0f}s")
        time.sleep(0.01)
    return running


@contextlib.contextmanager
def stop_signals() -> Iterator[threading.Event]:
    """An event that SIGTERM or SIGINT sets while inside; the old handlers come back after.

    Wait on it with a timeout (``while not stop.wait(0.5)``): the handler runs in the
    main thread between bytecodes, and a timed wait also lets the caller notice a
    server that died on its own.
    """
    stop = threading.Event()

    def handle(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, handle) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def run_server(
    service: CouponService,
    host: str = "127.0.0.1",
    port: int = 3000,
    *,
    log_level: str = "warning",
    on_ready: Callable[[RunningServer], None] | None = None,
    reuse_port: bool = False,
    headers: list[tuple[str, str]] | None = None,
    limits: Limits | None = None,
    sock: socket.socket | None = None,
) -> None:
    """Serve until SIGTERM or SIGINT (Ctrl-C), then shut down cleanly and return.

    uvicorn's own signal handling re-raises the signal after shutdown, which would
    kill the process before its caller can stop the database; so the server runs in
    a thread and the main thread waits for the signal itself.
    """
    with (
        stop_signals() as stop,
        serve_in_thread(
            service,
            host,
            port,
            log_level=log_level,
            reuse_port=reuse_port,
            headers=headers,
            limits=limits,
            sock=sock,
        ) as running,
    ):
        if on_ready is not None:
            on_ready(running)
        # A timed wait, so the signal handler runs promptly and a dead server ends us.
        while not stop.wait(0.5):
            if not running.running:
                raise ServerError("server stopped unexpectedly")
