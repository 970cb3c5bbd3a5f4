"""Serve the API from several processes on one port: the group (parent) and its workers.

One uvicorn process is held to one core by the GIL: about 350 us of CPU per claim,
2400-2500 claims/s with the process at 85-87% CPU (measured). So the group starts N
worker processes, each with its own pool, each serving one of N listening sockets on
the same port with SO_REUSEPORT; the kernel spreads new connections over the sockets
by a hash of each connection's addresses (2 processes on 2 cores: 3370-3460 claims/s;
3 were no better). A keep-alive connection stays with the worker that accepted it.
The parent binds the sockets (slots) and each worker inherits its own: a slot outlives
its worker, so a replacement serves the same queue (see ``serve_processes``).

Parent: ``serve_processes(url, processes=N) -> ServerGroup``. Worker:
``DATABASE_URL=URL python -m coupon_core.workers --port P [...]``, which prints
``ready <pid>`` once it accepts and serves until SIGTERM or SIGINT. The URL goes in
the environment, never on the command line: ``ps`` shows every process's argv. A worker's
backends are named ``coupon-service-<pid>`` in pg_stat_activity (prefix-compatible
with the single process's ``coupon-service``; ``--application-name`` changes the
prefix), and every response carries ``x-coupon-worker: <pid>``, so a probe can tell
which worker answered.

Supervision (``supervise=True``, what ``serve --workers N`` uses): a thread of the
parent watches the workers; one that exits on its own (a crash, a SIGKILL) is
replaced by a new worker on the same port, and each restart is counted, logged and
kept in ``ServerGroup.restart_log``. ``rolling_restart()`` replaces the workers one
by one, as gunicorn's arbiter does on SIGHUP: the new one serves the old one's slot
and says ready before the old one gets SIGTERM; the old one then stops accepting,
finishes its in-flight requests and closes its kept-alive connections after their next
response, with ``Connection: close`` (coupon_core.connections: the drain). No request
is lost: none waits in a closing listener's queue, none is sent on a connection closed
under it while the client could not know (``scripts/rolling_restart_load.py``).
``serve --workers N`` rolls its workers so on SIGHUP. The supervisor gives up (``check()`` raises) after ``max_restarts``, or
when a replacement does not start.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import psycopg

from coupon_core import schema
from coupon_core.errors import Unavailable
from coupon_core.redact import redact_text
from coupon_core.server import (
    BACKLOG,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_REQUEST_TIMEOUT_S,
    GRACEFUL_SHUTDOWN_S,
    Limits,
    RunningServer,
    Served,
    ServerError,
    _accepts,
    _bind,
    run_server,
)
from coupon_core.service import CouponService, ServiceConfig
from coupon_core.strategies import available_strategies, get_strategy

__all__ = ["WORKER_HEADER", "Restart", "ServerGroup", "serve_processes"]

log = logging.getLogger(__name__)

#: The response header naming the worker process that answered.
WORKER_HEADER = "x-coupon-worker"

DEFAULT_POOL_SIZE = 10  # per worker process
# Workers import the service and open their pools in parallel, on the same cores.
STARTUP_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = GRACEFUL_SHUTDOWN_S + 5.0
_TAIL_BYTES = 2000
_PARENT_POLL_S = 0.5
# How often the supervisor looks at its workers: a dead one is noticed within this.
_SUPERVISE_POLL_S = 0.02
#: Restarts a supervisor makes before it gives up (a worker that dies at start-up
#: would otherwise be restarted forever).
MAX_RESTARTS = 100


class _Worker:
    """One worker process: its stdout pipe (for the ready line) and its stderr file."""

    def __init__(
        self, argv: list[str], env: dict[str, str], slot: socket.socket | None = None
    ) -> None:
        # A file, not a pipe: nobody reads stderr while the worker serves, and a full
        # pipe would block it. pread, not read: the offset is shared with the worker.
        self._stderr = tempfile.TemporaryFile()  # noqa: SIM115 (closed by close())
        #: The listening socket the worker serves (inherited), the group's to keep.
        self.slot = slot
        if slot is not None:
            argv = [*argv, "--listen-fd", str(slot.fileno())]
        try:
            self.proc = subprocess.Popen(
                argv,
                pass_fds=() if slot is None else (slot.fileno(),),
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


@dataclass(frozen=True)
class Restart:
    """One replacement of a worker: why, when (monotonic ns), and how it went."""

    reason: Literal["exited", "rolling"]
    old_pid: int
    #: The old worker's exit code; negative: the signal that ended it (-9: SIGKILL).
    exit_code: int | None
    #: When the supervisor saw it exit (``exited``) or began replacing it (``rolling``).
    seen_ns: int
    new_pid: int | None = None
    #: When the replacement said ``ready`` (None: it did not start).
    ready_ns: int | None = None
    error: str | None = None

    @property
    def ready_s(self) -> float | None:
        """Seconds from ``seen_ns`` to the replacement's ready line."""
        return None if self.ready_ns is None else (self.ready_ns - self.seen_ns) / 1e9


class ServerGroup(Served):
    """Worker processes serving one port; ``stop()`` is bounded and idempotent.

    Supervised (``supervise()``), a worker that exits is replaced; see the module.
    """

    def __init__(
        self,
        workers: list[_Worker],
        host: str,
        port: int,
        argv: list[str] | None = None,
        env: dict[str, str] | None = None,
        *,
        startup_timeout: float = STARTUP_TIMEOUT_S,
        max_restarts: int = MAX_RESTARTS,
        slots: list[socket.socket] | None = None,
    ) -> None:
        self._workers = workers
        self._slots = slots or []
        self.host = host
        self.port = port
        self._argv = argv
        self._env = env
        self._startup_timeout = startup_timeout
        self._max_restarts = max_restarts
        self._stop_lock = threading.Lock()
        # Guards _workers and restart_log: the supervisor replaces entries in place.
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._supervisor: threading.Thread | None = None
        self._retiring: set[int] = set()  # pids a rolling restart is stopping on purpose
        self._retired: list[_Worker] = []
        self._gave_up: str | None = None
        #: Every replacement made, in order (crashes and rolling restarts).
        self.restart_log: list[Restart] = []

    @property
    def pids(self) -> list[int]:
        with self._lock:
            return [w.pid for w in self._workers]

    @property
    def running(self) -> bool:
        """Every worker is alive."""
        with self._lock:
            return all(w.proc.poll() is None for w in self._workers)

    @property
    def exit_codes(self) -> dict[int, int | None]:
        """Each worker's exit code by pid; None while it runs."""
        with self._lock:
            return {w.pid: w.proc.poll() for w in self._workers}

    @property
    def supervised(self) -> bool:
        return self._supervisor is not None

    @property
    def restarts(self) -> int:
        """Workers replaced because they exited on their own (rolling restarts not counted)."""
        with self._lock:
            return sum(1 for r in self.restart_log if r.reason == "exited")

    def check(self) -> None:
        """Raise ServerError, with its stderr, if a worker has exited (supervised: if the
        supervisor gave up)."""
        if self._supervisor is not None:
            if self._gave_up is not None:
                raise ServerError(self._gave_up)
            return
        with self._lock:
            for w in self._workers:
                if w.proc.poll() is not None:
                    raise ServerError(w.describe_exit())

    def wait_ready(self, timeout: float) -> None:
        """Wait for every worker's ``ready <pid>`` line; ServerError if one dies or is late."""
        with self._lock:
            workers = list(self._workers)
        _wait_ready(workers, timeout)

    # -- supervision ---------------------------------------------------------------

    def supervise(self) -> None:
        """Start the supervisor thread (once); needs the group's worker argv."""
        if self._argv is None or self._env is None:
            raise ValueError("a group without its worker argv cannot restart workers")
        if self._supervisor is None:
            self._supervisor = threading.Thread(
                target=self._watch, name=f"server-supervisor-{self.port}", daemon=True
            )
            self._supervisor.start()

    def wait_restart(self, old_pid: int, timeout: float) -> Restart | None:
        """The restart that replaced ``old_pid``, once its replacement is ready or failed."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                for r in self.restart_log:
                    if r.old_pid == old_pid:
                        return r
            if time.monotonic() >= deadline or self._stopping.is_set():
                return None
            time.sleep(_SUPERVISE_POLL_S)

    def rolling_restart(self, *, pause_s: float = 0.0) -> list[Restart]:
        """Replace every worker, one at a time: start the new one, wait for its ready
        line, then SIGTERM the old one (graceful: in-flight requests finish, bounded by
        ``STOP_TIMEOUT_S``). ``pause_s`` between workers. Returns the restarts made."""
        if self._argv is None or self._env is None:
            raise ValueError("a group without its worker argv cannot restart workers")
        made: list[Restart] = []
        for old in list(self._workers):
            if self._stopping.is_set():
                break
            seen = time.monotonic_ns()
            with self._lock:
                self._retiring.add(old.pid)
            new, error = self._start_one(old.slot)
            restart = Restart(
                "rolling",
                old.pid,
                None,
                seen,
                new_pid=None if new is None else new.pid,
                ready_ns=None if new is None else time.monotonic_ns(),
                error=error,
            )
            if new is None:
                with self._lock:
                    self._retiring.discard(old.pid)
                    self.restart_log.append(restart)
                made.append(restart)
                raise ServerError(f"rolling restart: {error}")
            with self._lock:
                self._workers[self._workers.index(old)] = new
                self._retired.append(old)
            old.proc.send_signal(signal.SIGTERM)
            try:
                old.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                old.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    old.proc.wait(5.0)
            restart = Restart(
                "rolling",
                old.pid,
                old.proc.returncode,
                seen,
                new_pid=new.pid,
                ready_ns=restart.ready_ns,
            )
            with self._lock:
                self.restart_log.append(restart)
            log.info("worker %d replaced by %d (rolling restart)", old.pid, new.pid)
            made.append(restart)
            if pause_s > 0 and self._stopping.wait(pause_s):
                break
        return made

    def _start_one(self, slot: socket.socket | None) -> tuple[_Worker | None, str | None]:
        assert self._argv is not None
        assert self._env is not None
        try:
            worker = _Worker(self._argv, self._env, slot)
        except OSError as err:
            return None, f"cannot start a worker: {err}"
        try:
            _wait_ready([worker], self._startup_timeout)
        except ServerError as err:
            with contextlib.suppress(OSError):
                worker.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                worker.proc.wait(5.0)
            worker.close()
            return None, str(err)
        return worker, None

    def _watch(self) -> None:
        while not self._stopping.wait(_SUPERVISE_POLL_S):
            with self._lock:
                dead = [
                    w
                    for w in self._workers
                    if w.pid not in self._retiring and w.proc.poll() is not None
                ]
            for w in dead:
                if self._stopping.is_set():
                    return
                self._replace(w)
                if self._gave_up is not None:
                    return

    def _replace(self, dead: _Worker) -> None:
        seen = time.monotonic_ns()
        code = dead.proc.returncode
        with self._lock:
            made = len(self.restart_log)
        if made >= self._max_restarts:
            self._gave_up = (
                f"worker {dead.pid} exited with code {code}; not restarted: "
                f"{made} restarts already (the limit){dead.stderr_tail()}"
            )
            log.error("%s", self._gave_up)
            return
        log.warning("worker %d exited with code %s; restarting it", dead.pid, code)
        new, error = self._start_one(dead.slot)
        restart = Restart(
            "exited",
            dead.pid,
            code,
            seen,
            new_pid=None if new is None else new.pid,
            ready_ns=None if new is None else time.monotonic_ns(),
            error=error,
        )
        with self._lock:
            if new is not None:
                self._workers[self._workers.index(dead)] = new
            self._retired.append(dead)
            self.restart_log.append(restart)
            count = sum(1 for r in self.restart_log if r.reason == "exited")
        if new is None:
            self._gave_up = f"worker {dead.pid} exited with code {code}; its replacement: {error}"
            log.error("%s", self._gave_up)
            return
        log.warning(
            "worker %d replaced by %d, ready in %.3fs (restart %d)",
            dead.pid,
            new.pid,
            restart.ready_s or 0.0,
            count,
        )

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """SIGTERM every worker, give them ``timeout`` together, then SIGKILL the rest."""
        with self._stop_lock:
            self._stopping.set()
            if self._supervisor is not None:
                # A restart in progress is bounded by the startup timeout.
                self._supervisor.join(self._startup_timeout + 10.0)
            with self._lock:
                workers = [*self._workers, *self._retired]
            for w in workers:
                w.proc.send_signal(signal.SIGTERM)  # a no-op once it has been reaped
            deadline = time.monotonic() + timeout
            for w in workers:
                try:
                    w.proc.wait(max(0.0, deadline - time.monotonic()))
                except subprocess.TimeoutExpired:
                    w.proc.kill()
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        w.proc.wait(5.0)  # stuck in the kernel: still bounded
            for w in workers:
                w.close()
            # Last: until now a connection that reached a slot waited in its queue.
            for slot in self._slots:
                slot.close()


def _wait_ready(workers: list[_Worker], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    pending = {w.stdout_fd(): w for w in workers}
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


def _spawn(argv: list[str], env: dict[str, str], slots: list[socket.socket]) -> list[_Worker]:
    workers: list[_Worker] = []
    try:
        for slot in slots:
            workers.append(_Worker(argv, env, slot))
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
    supervise: bool = False,
    application_name: str | None = None,
    max_restarts: int = MAX_RESTARTS,
    pool_timeout: float = ServiceConfig.pool_timeout,
    connect_timeout: float = ServiceConfig.connect_timeout,
    limits: Limits | None = None,
) -> ServerGroup:
    """Start ``processes`` workers on one port, each with ``pool_size`` connections.

    Returns once every worker accepts connections.

    The parent binds and listens one SO_REUSEPORT socket per worker (a slot) and the
    worker inherits it; the group keeps every slot open until ``stop()``. The kernel
    spreads connections over the slots as it did over the workers' own listeners, and
    a slot outlives its worker: a replacement (rolling or after a crash) serves the
    same socket, so the connections waiting in its queue are served, not reset (the
    kernel resets a closing SO_REUSEPORT listener's queue), and the spread of
    connections over the slots never changes. With ``port=0`` the kernel picks the port.
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
    slots = [_bind(host, port, reuse_port=True)]
    bound = int(slots[0].getsockname()[1])
    try:
        # Checked before any slot listens (a bound socket takes no connections).
        if port and _accepts(host, bound):
            # Another SO_REUSEPORT server (an earlier group) would share the port silently.
            raise ServerError(f"cannot listen on {host}:{bound}: a server is listening there")
        slots += [_bind(host, bound, reuse_port=True) for _ in range(processes - 1)]
        for slot in slots:
            slot.listen(BACKLOG)
    except BaseException:
        for slot in slots:
            slot.close()
        raise
    argv = _worker_argv(host, bound, strategy, pool_size)
    argv += ["--pool-timeout", str(pool_timeout), "--connect-timeout", str(connect_timeout)]
    argv += ["--request-timeout", str(limits.request_timeout_s)]
    argv += ["--max-connections", str(limits.max_connections)]
    if application_name is not None:
        argv += ["--application-name", application_name]
    env = _worker_env(database_url)
    try:
        workers = _spawn(argv, env, slots)
    except BaseException:
        for slot in slots:
            slot.close()
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


if __name__ == "__main__":
    sys.exit(main())
