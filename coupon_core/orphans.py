"""Orphaned temp clusters: who owns one, and reaping those whose owner died.

``EmbeddedPostgres.create()`` makes a cluster in a ``coupon-chaos-pg-*`` temp directory.
Its postmaster is a daemon that outlives whoever started it, so the directory records
its owner (``Owner``); the cluster is stopped at interpreter exit if nobody closed it
(atexit, in ``coupon_core.database``), and since SIGKILL skips atexit,
``reap_orphans()`` stops and deletes the clusters of owners that died.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

__all__ = ["ORPHAN_MIN_IDLE_S", "TEMP_PREFIX", "Owner", "reap_orphans"]

log = logging.getLogger("coupon_core.database")

# The temp directories of create(); the only ones reap_orphans() looks at.
TEMP_PREFIX = "coupon-chaos-pg-"
# What create() and start() put in such a directory: anything else is not ours.
_TEMP_ENTRIES = frozenset({"data", "socket", "port", "owner", "owner.tmp"})
# A replicated cluster (coupon_core.cluster) keeps one such layout per node: node0, node1...
_NODE_PREFIX = "node"
# A directory without an owner record (made before owners were recorded) is left
# alone until it has been idle this long: it may belong to a process still running.
ORPHAN_MIN_IDLE_S = 600.0
# Bound on waiting for a SIGKILLed postmaster to go.
_KILL_WAIT_S = 10.0


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


def _is_node_dir(entry: Path) -> bool:
    name = entry.name
    return (
        name.startswith(_NODE_PREFIX)
        and name[len(_NODE_PREFIX) :].isdigit()
        and entry.is_dir()
        and not entry.is_symlink()
        and {e.name for e in entry.iterdir()} <= _TEMP_ENTRIES
    )


def _data_dirs(base: Path) -> list[Path]:
    """The clusters' data directories under ``base``: its own, and each replicated node's."""
    nodes = sorted(e / "data" for e in base.iterdir() if _is_node_dir(e))
    return [base / "data", *nodes]


def _is_orphan(base: Path) -> bool:
    if base.is_symlink() or not base.is_dir():
        return False
    if os.geteuid() != 0 and base.stat().st_uid != os.geteuid():
        return False  # another user's: not ours to stop
    if not all(e.name in _TEMP_ENTRIES or _is_node_dir(e) for e in base.iterdir()):
        return False  # holds something create() never puts there
    owner = Owner.read(base)
    if owner is not None:
        return not owner.is_alive()
    # No record: made before owners were recorded (or a create() just now, between
    # mkdtemp and the record). Only an idle one, and only if nobody uses its server.
    if _idle_s(base) < ORPHAN_MIN_IDLE_S:
        return False
    return all(_postmaster_pid(d) is None or not _has_clients(d) for d in _data_dirs(base))


def _reap(base: Path, stop_now: Callable[[Path], object]) -> bool:
    """Stop the servers of an orphaned cluster (bounded), then delete its directory."""
    return all(_stop_one(data, stop_now) for data in _data_dirs(base)) and _delete(base)


def _delete(base: Path) -> bool:
    shutil.rmtree(base, ignore_errors=True)
    return not base.exists()


def _stop_one(data: Path, stop_now: Callable[[Path], object]) -> bool:
    """Stop the server of ``data``, if one runs; False if it survived even SIGKILL."""
    if _postmaster_pid(data) is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            stop_now(data)
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
    return True


def reap_orphans(temp_root: Path | None, stop_now: Callable[[Path], object]) -> list[Path]:
    """Stop and delete the temp clusters whose owner died; return their directories.

    atexit covers a normal exit, but a SIGKILL (a timed-out test run, a crashed
    kernel) skips it and leaves the postmaster running, holding a port, memory and
    its directory. Looks only at ``coupon-chaos-pg-*`` directories in ``temp_root``
    (default: the system temp directory) that hold nothing but what ``create()``
    puts there. Never touches one whose owner is alive, nor one without an owner
    record that changed in the last ``ORPHAN_MIN_IDLE_S`` or has clients connected.
    ``stop_now(data_dir)`` stops a server at once, bounded (pg_ctl as its user).
    """
    root = Path(temp_root) if temp_root is not None else Path(tempfile.gettempdir())
    reaped: list[Path] = []
    for base in sorted(root.glob(f"{TEMP_PREFIX}*")):
        try:
            if _is_orphan(base) and _reap(base, stop_now):
                log.info("reaped the orphaned cluster in %s", base)
                reaped.append(base)
        except Exception as err:  # one odd directory must not keep the others
            log.warning("could not reap %s: %s", base, err)
    return reaped
