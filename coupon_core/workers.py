"""Serve the API from several processes on one port: the group (parent) and its workers.

One uvicorn process is held to one core by the GIL: about 350 us of CPU per claim,
2400-2500 claims/s with the process at 85-87% CPU (measured). So the group starts N
worker processes, each with its own pool, each listening on the same port with
SO_REUSEPORT; the kernel spreads new connections over their listeners by a hash of
each connection's addresses (2 processes on 2 cores: 3370-3460 claims/s; 3 were no
better). A keep-alive connection stays with the worker that accepted it.

Parent: ``serve_processes(url, processes=N) -> ServerGroup``. Worker:
``DATABASE_URL=URL python -m coupon_core.workers --port P [...]``, which prints
``ready <pid>`` once it accepts and serves until SIGTERM or SIGINT. The URL goes in
the environment, never on the command line: ``ps`` shows every process's argv. A worker's
backends are named ``coupon-service-<pid>`` in pg_stat_activity (prefix-compatible
with the single process's ``coupon-service``).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import psycopg

from coupon_core import schema
from coupon_core.errors import Unavailable
from coupon_core.redact import redact_text
from coupon_core.server import (
    GRACEFUL_SHUTDOWN_S,
    RunningServer,
    Served,
    ServerError,
    _accepts,
    _bind,
    run_server,
)
from coupon_core.service import CouponService, ServiceConfig
from coupon_core.strategies import available_strategies, get_strategy

__all__ = ["ServerGroup", "serve_processes"]

DEFAULT_POOL_SIZE = 10  # per worker process
# Workers import the service and open their pools in parallel, on the same cores.
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = GRACEFUL_SHUTDOWN_S + 5.0
_TAIL_BYTES = 2000
_PARENT_POLL_S = 0.5


class _Worker:
    """One worker process: its stdout pipe (for the ready line) and its stderr file."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        # A file, not a pipe: nobody reads stderr while the worker serves, and a full
        # pipe would block it. pread, not read: the offset is shared with the worker.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        try:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=self._stderr,
                env=env,
                # Its own process group: a terminal's Ctrl-C reaches the parent only,
                # which stops the workers in order (they stop themselves if it dies).
                process_group=0,
            )
        except BaseException:
            self._stderr.close()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stdout_fd(self) -> int:
        assert self.proc.stdout is not None
        return self.proc.stdout.fileno()

    def stderr_tail(self) -> str:
        fd = self._stderr.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - _TAIL_BYTES)
        text = os.pread(fd, size - start, start).decode(errors="replace").strip()
        return f": {text}" if text else " (nothing on stderr)"

    def describe_exit(self) -> str:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(2.0)  # its stdout closed: it is exiting
        return f"worker {self.pid} exited with code {self.proc.returncode}{self.stderr_tail()}"

    def close(self) -> None:
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._stderr.close()


class ServerGroup(Served):
    """Worker processes serving one port; ``stop()`` is bounded and idempotent."""

    def __init__(self, workers: list[_Worker], host: str, port: int) -> None:
        self._workers = workers
        self.host = host
        self.port = port
        self._stop_lock = threading.Lock()

    @property
    def pids(self) -> list[int]:
        return [w.pid for w in self._workers]

    @property
    def running(self) -> bool:
        """Every worker is alive."""
        return all(w.proc.poll() is None for w in self._workers)

    @property
    def exit_codes(self) -> dict[int, int | None]:
        """Each worker's exit code by pid; None while it runs."""
        return {w.pid: w.proc.poll() for w in self._workers}

    def check(self) -> None:
        """Raise ServerError, with its stderr, if a worker has exited."""
        for w in self._workers:
            if w.proc.poll() is not None:
                raise ServerError(w.describe_exit())

    def wait_ready(self, timeout: float) -> None:
        """Wait for every worker's ``ready <pid>`` line; ServerError if one dies or is late."""
        deadline = time.monotonic() + timeout
        pending = {w.stdout_fd(): w for w in self._workers}
        received = dict.fromkeys(pending, b"")
        while pending:
            left = deadline - time.monotonic()
            if left <= 0:
                late = next(iter(pending.values()))
                raise ServerError(
                    f"worker {late.pid} was not ready within {timeout:.0f}s{late.stderr_tail()}"
                )
            # A worker that dies closes its stdout, which wakes the select too.
            readable, _, _ = select.select(list(pending), [], [], left)
            for fd in readable:
                worker = pending[fd]
                chunk = os.read(fd, 256)
                if not chunk:
                    raise ServerError(worker.describe_exit())
                received[fd] += chunk
                if b"\n" in received[fd]:
                    _expect_ready(worker, received[fd])
                    del pending[fd]

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every worker, give them ``timeout`` together, then SIGKILL the rest."""
        with self._stop_lock:
            for w in self._workers:
                w.proc.send_signal(signal.SIGTERM)  # a no-op once it has been reaped
            deadline = time.monotonic() + timeout
            for w in self._workers:
                try:
                    w.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        w.proc.wait(5.0)  # stuck in the kernel: still bounded
            for w in self._workers:
                w.close()


def _expect_ready(worker: _Worker, received: bytes) -> None:
    line = received.split(b"\n", 1)[0].decode(errors="replace")
    if line != f"ready {worker.pid}":
        raise ServerError(f"worker {worker.pid} said {line!r} instead of 'ready {worker.pid}'")


def _worker_env(database_url: str) -> dict[str, str]:
    # Workers import the same coupon_core as the parent, installed or not.
    root = str(Path(__file__).resolve().parents[1])
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "DATABASE_URL": database_url}


def _ensure_schema(database_url: str) -> None:
    # Once here, so the workers open their pools without racing to create tables.
    try:
        schema.apply_schema(database_url)
    except psycopg.Error as err:
        raise Unavailable("service unavailable: cannot reach the database") from err


def _spawn(argv: list[str], env: dict[str, str], processes: int) -> list[_Worker]:
    workers: list[_Worker] = []
    try:
        for _ in range(processes):
            workers.append(_Worker(argv, env))
    except BaseException:
        ServerGroup(workers, "", 0).stop()
        raise
    return workers


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
    pool_timeout: float = ServiceConfig.pool_timeout,
    connect_timeout: float = ServiceConfig.connect_timeout,
) -> ServerGroup:
    """Start ``processes`` workers on one port, each with ``pool_size`` connections.

    Returns once every worker accepts connections.

    With ``port=0`` the kernel picks the port: the parent binds a SO_REUSEPORT socket
    without listening, which holds the port for the workers yet takes no connections
    (only listeners share them), and closes it once every worker is ready.
    ``apply_schema=False``: the caller vouches for the schema.

    Raises Unavailable if the schema cannot be applied, ServerError if the port is
    taken (by any server, SO_REUSEPORT or not) or a worker does not start (the others
    are stopped first).
    """
    if processes < 1 or pool_size < 1:
        raise ValueError(f"need processes >= 1 and pool_size >= 1: {processes}, {pool_size}")
    get_strategy(strategy)  # an unknown name fails here, not once per worker
    if apply_schema:
        _ensure_schema(database_url)
    with _bind(host, port, reuse_port=True) as reservation:
        bound = int(reservation.getsockname()[1])
        if port and _accepts(host, bound):
            # Another SO_REUSEPORT server (an earlier group) would share the port silently.
            raise ServerError(f"cannot listen on {host}:{bound}: a server is listening there")
        argv = _worker_argv(host, bound, strategy, pool_size)
        argv += ["--pool-timeout", str(pool_timeout), "--connect-timeout", str(connect_timeout)]
        group = ServerGroup(_spawn(argv, _worker_env(database_url), processes), host, bound)
        try:
            group.wait_ready(startup_timeout)
        except BaseException:
            group.stop()
            raise
    return group


def _worker_argv(host: str, port: int, strategy: str, pool_size: int) -> list[str]:
    # No URL here: it may carry a password, and argv is public (/proc/<pid>/cmdline).
    return [
        sys.executable,
        "-m",
        "coupon_core.workers",
        *("--host", host, "--port", str(port)),
        *("--strategy", strategy, "--pool-size", str(pool_size)),
        *("--parent-pid", str(os.getpid())),
    ]


# --- the worker process -------------------------------------------------------------


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
    config = ServiceConfig(
        strategy=args.strategy,
        pool_min=args.pool_size,
        pool_max=args.pool_size,
        pool_timeout=args.pool_timeout,
        connect_timeout=args.connect_timeout,
        apply_schema=False,  # the parent applied it
        application_name=f"{ServiceConfig.application_name}-{os.getpid()}",
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
            run_server(service, args.host, args.port, on_ready=ready, reuse_port=True)
    except (psycopg.Error, ServerError) as err:  # PoolTimeout is a psycopg.Error
        reason = redact_text(str(err), database_url)
        print(f"worker {os.getpid()}: {reason}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
