"""A group of worker processes serving one port: supervision and rolling restarts.

A ``ServerGroup`` (started by ``coupon_core.workers.serve_processes``) holds its
workers and their slots (the listening sockets, ``coupon_core.slots``). Supervised
(``supervise()``, what ``serve --workers N`` uses), a thread of the parent watches the
workers; one that exits on its own (a crash, a SIGKILL) is replaced by a new worker on
the same slot, and each restart is counted, logged and kept in ``restart_log``.
``rolling_restart()`` replaces the workers one by one, as gunicorn's arbiter does on
SIGHUP: the new one serves the old one's slot and says ready before the old one gets
SIGTERM; the old one then stops accepting, finishes its in-flight requests and closes
its kept-alive connections after their next response, with ``Connection: close``
(coupon_core.connections: the drain). No request is lost: none waits in a closing
listener's queue, none is sent on a connection closed under it while the client could
not know (``scripts/rolling_restart_load.py``). The supervisor gives up (``check()``
raises) after ``max_restarts``, or when a replacement does not start.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass
from typing import Literal

from coupon_core.server import GRACEFUL_SHUTDOWN_S, Served, ServerError
from coupon_core.worker_process import STARTUP_TIMEOUT_S, WorkerProcess, stop_workers, wait_ready

__all__ = ["MAX_RESTARTS", "STOP_TIMEOUT_S", "Restart", "ServerGroup"]

log = logging.getLogger("coupon_core.workers")

STOP_TIMEOUT_S = GRACEFUL_SHUTDOWN_S + 5.0
# How often the supervisor looks at its workers: a dead one is noticed within this.
_SUPERVISE_POLL_S = 0.02
#: Restarts a supervisor makes before it gives up (a worker that dies at start-up
#: would otherwise be restarted forever).
MAX_RESTARTS = 100


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
        workers: list[WorkerProcess],
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
        self._retired: list[WorkerProcess] = []
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
        wait_ready(workers, timeout)

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

    def _start_one(self, slot: socket.socket | None) -> tuple[WorkerProcess | None, str | None]:
        assert self._argv is not None
        assert self._env is not None
        try:
            worker = WorkerProcess(self._argv, self._env, slot)
        except OSError as err:
            return None, f"cannot start a worker: {err}"
        try:
            wait_ready([worker], self._startup_timeout)
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

    def _replace(self, dead: WorkerProcess) -> None:
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
            stop_workers(workers, timeout)
            # Last: until now a connection that reached a slot waited in its queue.
            for slot in self._slots:
                slot.close()
