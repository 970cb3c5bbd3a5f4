"""The parent's handle on one worker process of a server group: start it, hear it say ready.

A worker is ``python -m coupon_core.workers`` (``coupon_core.worker_main``) with the
database URL in its environment, never on its command line (``ps`` shows every
process's argv), and its listening socket (the group's slot) inherited as a file
descriptor. It prints ``ready <pid>`` once it accepts; ``wait_ready`` reads that line,
and a worker that dies first, or says anything else, is a ``ServerError`` with the
tail of its stderr.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from coupon_core.server import ServerError

__all__ = [
    "DEFAULT_POOL_SIZE",
    "STARTUP_TIMEOUT_S",
    "WorkerProcess",
    "spawn",
    "stop_workers",
    "wait_ready",
    "worker_argv",
    "worker_env",
]

DEFAULT_POOL_SIZE = 10  # per worker process
# Workers import the service and open their pools in parallel, on the same cores.
STARTUP_TIMEOUT_S = 30.0
_TAIL_BYTES = 2000


class WorkerProcess:
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


def wait_ready(workers: list[WorkerProcess], timeout: float) -> None:
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


def _expect_ready(worker: WorkerProcess, received: bytes) -> None:
    line = received.split(b"\n", 1)[0].decode(errors="replace")
    if line != f"ready {worker.pid}":
        raise ServerError(f"worker {worker.pid} said {line!r} instead of 'ready {worker.pid}'")


def worker_env(database_url: str) -> dict[str, str]:
    # Workers import the same coupon_core as the parent, installed or not.
    root = str(Path(__file__).resolve().parents[1])
    paths = [root, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(paths), "DATABASE_URL": database_url}


def spawn(argv: list[str], env: dict[str, str], slots: list[socket.socket]) -> list[WorkerProcess]:
    """One worker per slot; if one cannot start, those started are stopped first."""
    workers: list[WorkerProcess] = []
    try:
        for slot in slots:
            workers.append(WorkerProcess(argv, env, slot))
    except BaseException:
        stop_workers(workers, 5.0)
        raise
    return workers


def stop_workers(workers: list[WorkerProcess], timeout: float) -> None:
    """SIGTERM every worker, give them ``timeout`` together, then SIGKILL the rest; close."""
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


def worker_argv(host: str, port: int, strategy: str, pool_size: int) -> list[str]:
    # No URL here: it may carry a password, and argv is public (/proc/<pid>/cmdline).
    return [
        sys.executable,
        "-m",
        "coupon_core.workers",
        *("--host", host, "--port", str(port)),
        *("--strategy", strategy, "--pool-size", str(pool_size)),
        *("--parent-pid", str(os.getpid())),
    ]
