"""A replicated PostgreSQL: one primary and streaming standbys from the embedded binaries.

``ReplicatedCluster.create(standbys=1, mode="sync")`` makes every node in one
``coupon-chaos-pg-*`` temp directory (``node0``, ``node1``, ...), owned by this
process like ``EmbeddedPostgres.create()``'s cluster: stopped and deleted on
``close()`` or at interpreter exit, and reaped by ``reap_orphans()`` once its owner
died (a SIGKILLed test). PostgreSQL's own parts do the work: ``initdb`` for the
primary, ``pg_basebackup -R`` for each standby, ``pg_ctl promote`` for a failover,
``pg_rewind`` to rejoin an old primary as a standby.

Replication modes (``mode``):

    async         commits are acknowledged once local (``synchronous_standby_names`` empty)
    sync          ``synchronous_standby_names = 'ANY 1 (...)'``, ``synchronous_commit = on``:
                  acknowledged once a standby has flushed the commit's WAL
    remote_apply  the same with ``synchronous_commit = remote_apply``: acknowledged once
                  a standby has applied it (visible to reads there)

The service reaches the cluster through ``url``: a libpq multi-host URL with
``target_session_attrs=read-write``, so new connections find the primary wherever
it is. ``relink(standby, host, port)`` points a standby's replication connection
elsewhere (the lab puts its fault proxy there).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from coupon_core.embedded import (
    EmbeddedPostgres,
    bin_dir,
    ensure_system_user,
    free_port,
    open_prefixes,
    reap_orphans,
)
from coupon_core.errors import DatabaseError
from coupon_core.orphans import TEMP_PREFIX, Owner

__all__ = ["MODES", "ReplicatedCluster", "ReplicationMode", "Role", "multi_host_url"]

log = logging.getLogger("coupon_core.database")

ReplicationMode = Literal["async", "sync", "remote_apply"]
MODES: tuple[ReplicationMode, ...] = ("async", "sync", "remote_apply")
Role = Literal["primary", "standby", "down"]
# Bound on waiting for a standby to stream, a promotion, a killed node to go.
_WAIT_S = 60.0
# Ports tried for a node before giving up.
_PORT_ATTEMPTS = 3


def multi_host_url(ports: list[int], host: str = "127.0.0.1", **params: str) -> str:
    """``postgresql://postgres@h:p1,h:p2/postgres?k=v``: libpq tries the hosts in order."""
    hosts = ",".join(f"{host}:{p}" for p in ports)
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"postgresql://postgres@{hosts}/postgres" + (f"?{query}" if query else "")


def _children(pid: int) -> list[int]:
    """The pids whose parent is ``pid`` (a postmaster's backends and workers)."""
    out = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = entry.joinpath("stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                out.append(int(entry.name))
    return out


def _alive(pid: int) -> bool:
    with contextlib.suppress(OSError, IndexError):
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    return False


@dataclass
class Node:
    """One server of the cluster: its name (``node0``...), its database, its role."""

    name: str
    db: EmbeddedPostgres
    role: Role = "down"

    @property
    def port(self) -> int:
        return self.db.port

    @property
    def url(self) -> str:
        return self.db.url


def _conf_lines(mode: ReplicationMode, standby_names: list[str]) -> str:
    sync = "" if mode == "async" or not standby_names else f"ANY 1 ({', '.join(standby_names)})"
    commit = "remote_apply" if mode == "remote_apply" else "on"
    return (
        "\n# coupon-chaos replication settings\n"
        "wal_level = replica\nmax_wal_senders = 10\nmax_replication_slots = 10\n"
        "wal_keep_size = '256MB'\nhot_standby = on\n"
        # pg_rewind needs hint bits WAL-logged and full page images.
        "wal_log_hints = on\nfull_page_writes = on\n"
        # Standbys report often and reconnect fast once a cut link is restored.
        "wal_receiver_status_interval = '1s'\nwal_retrieve_retry_interval = '200ms'\n"
        "recovery_target_timeline = 'latest'\n"
        f"synchronous_commit = {commit}\nsynchronous_standby_names = '{sync}'\n"
    )


@dataclass
class ReplicatedCluster:
    """A primary and ``standbys`` streaming standbys on loopback ports; see the module."""

    base: Path
    standbys: int = 1
    mode: ReplicationMode = "async"
    host: str = "127.0.0.1"
    nodes: list[Node] = field(default_factory=list)
    delete_on_close: bool = True
    #: The promotions and kills, in order, with monotonic times (ns): the cluster's story.
    events: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def create(
        cls,
        *,
        standbys: int = 1,
        mode: str = "async",
        temp_root: Path | None = None,
    ) -> ReplicatedCluster:
        """A cluster in a new temp directory owned by this process (not started yet)."""
        if mode not in MODES:
            raise DatabaseError(f"unknown replication mode {mode!r}; choose one of {MODES}")
        if standbys not in (1, 2):
            raise DatabaseError(f"standbys must be 1 or 2, not {standbys!r}")
        try:
            reap_orphans(temp_root)
        except Exception as err:  # housekeeping: never stops a run
            log.warning("reaping orphaned clusters failed: %s", err)
        base = Path(tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=temp_root))
        Owner.current().write(base)
        cluster = cls(base=base, standbys=standbys, mode=mode)
        for i in range(standbys + 1):
            db = EmbeddedPostgres(data_dir=base / f"node{i}" / "data")
            cluster.nodes.append(Node(f"node{i}", db))
        _CLUSTERS[id(cluster)] = cluster
        return cluster

    # -- addresses ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Every node, ``target_session_attrs=read-write``: the primary, wherever it is."""
        return multi_host_url(
            [n.port for n in self.nodes], self.host, target_session_attrs="read-write"
        )

    @property
    def restartable(self) -> bool:
        return False  # one node at a time: kill_primary and promote, not stop/start

    @property
    def primary(self) -> Node:
        for node in self.nodes:
            if node.role == "primary":
                return node
        raise DatabaseError("the cluster has no primary now")

    def standby_nodes(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "standby"]

    def node(self, name: str) -> Node:
        for n in self.nodes:
            if n.name == name:
                return n
        raise DatabaseError(f"no node {name!r}")

    # -- life cycle --------------------------------------------------------------------

    def start(self) -> ReplicatedCluster:
        """Make and start the primary, then each standby from a base backup; wait for streaming."""
        primary = self.nodes[0]
        primary.db._ensure_initialised()
        names = [n.name for n in self.nodes[1:]]
        with primary.db.data_dir.joinpath("postgresql.conf").open("a") as conf:
            conf.write(_conf_lines(self.mode, names))
        # The lab connects as postgres over loopback: trust, replication included.
        self._start_node(primary)
        primary.role = "primary"
        for node in self.nodes[1:]:
            self._base_backup(node, primary)
            self._start_node(node)
            node.role = "standby"
        self.wait_streaming()
        return self

    def _start_node(self, node: Node) -> None:
        """Start ``node`` on a port picked just now; another if someone took it meanwhile.

        ``free_port`` only says nobody listens *now*: on a busy machine another process
        may bind the port before the postmaster does (seen once in 100 sweep runs).
        """
        for attempt in range(_PORT_ATTEMPTS):
            node.db.port = free_port(self.host)
            try:
                node.db.start()
                return
            except DatabaseError as err:
                if "already in use" not in str(err) or attempt == _PORT_ATTEMPTS - 1:
                    raise
                log.warning("port %d of %s taken meanwhile: another", node.db.port, node.name)
                node.db.data_dir.joinpath("server.log").unlink(missing_ok=True)

    def close(self) -> None:
        """Stop every node (bounded) and delete the directory."""
        for node in self.nodes:
            try:
                node.db._halt()
            except Exception as err:  # one stuck node must not keep the others running
                log.warning("could not stop %s: %s", node.name, err)
            node.role = "down"
        if self.delete_on_close:
            shutil.rmtree(self.base, ignore_errors=True)
        _CLUSTERS.pop(id(self), None)

    def __enter__(self) -> ReplicatedCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def stop(self) -> None:
        raise DatabaseError("a replicated cluster is stopped one node at a time (kill_primary)")

    # -- replication -------------------------------------------------------------------

    def _base_backup(self, node: Node, source: Node) -> None:
        node_dir = node.db.data_dir.parent
        node_dir.mkdir(parents=True, exist_ok=True)
        _own(node.db, node_dir)
        proc = node.db._run(
            [
                str(bin_dir() / "pg_basebackup"),
                "-h",
                self.host,
                "-p",
                str(source.port),
                "-U",
                "postgres",
                "-D",
                str(node.db.data_dir),
                "-X",
                "stream",
                "-R",
                "--no-sync",
                "-c",
                "fast",
            ]
        )
        if proc.returncode != 0:
            raise DatabaseError(f"pg_basebackup failed: {proc.stderr.strip()[-2000:]}")
        # The copy holds the primary's server.log: a standby's log should be its own.
        node.db.data_dir.joinpath("server.log").unlink(missing_ok=True)
        self._write_standby_conf(node, self.host, source.port)

    def _write_standby_conf(self, node: Node, host: str, port: int) -> None:
        # application_name names the standby in synchronous_standby_names.
        conninfo = f"host={host} port={port} user=postgres application_name={node.name}"
        with node.db.data_dir.joinpath("postgresql.auto.conf").open("a") as conf:
            conf.write(f"primary_conninfo = '{conninfo}'\n")
        signal_file = node.db.data_dir.joinpath("standby.signal")
        signal_file.touch()
        _own(node.db, signal_file)
        _own(node.db, node.db.data_dir.joinpath("postgresql.auto.conf"))

    def relink(self, node: Node, host: str, port: int) -> None:
        """Point ``node``'s replication connection at ``host:port`` (a proxy, a new primary)."""
        conninfo = f"host={host} port={port} user=postgres application_name={node.name}"
        self._sql(node, f"ALTER SYSTEM SET primary_conninfo = '{conninfo}'")
        self._sql(node, "SELECT pg_reload_conf()")

    def wait_streaming(self, timeout_s: float = _WAIT_S) -> None:
        """Block until every standby streams from the primary (pg_stat_replication)."""
        want = {n.name for n in self.standby_nodes()}
        deadline = time.monotonic() + timeout_s
        seen: set[str] = set()
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                rows = self._sql(
                    self.primary,
                    "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'",
                )
                seen = {str(r[0]) for r in rows}
                if want <= seen:
                    return
            time.sleep(0.05)
        raise DatabaseError(f"standbys {sorted(want - seen)} not streaming after {timeout_s:.0f}s")

    def wait_caught_up(self, timeout_s: float = _WAIT_S) -> None:
        """Block until every standby has replayed all the WAL the primary wrote so far."""
        target = self._sql(self.primary, "SELECT pg_current_wal_lsn()::text")[0][0]
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            behind = [
                n.name
                for n in self.standby_nodes()
                if not self._sql(n, f"SELECT pg_last_wal_replay_lsn() >= '{target}'::pg_lsn")[0][0]
            ]
            if not behind:
                return
            time.sleep(0.02)
        raise DatabaseError(f"standbys {behind} still behind after {timeout_s:.0f}s")

    def most_advanced_standby(self) -> Node:
        """The standby that received the most WAL: the one to promote (the others can follow it)."""
        standbys = self.standby_nodes()
        if not standbys:
            raise DatabaseError("no standby to promote")

        def received(node: Node) -> int:
            row = self._sql(
                node,
                "SELECT pg_wal_lsn_diff(GREATEST(pg_last_wal_receive_lsn(),"
                " pg_last_wal_replay_lsn()), '0/0')::bigint",
            )
            return int(str(row[0][0] or 0))

        return max(standbys, key=received)

    def lag_bytes(self) -> dict[str, int]:
        """WAL bytes each standby has yet to replay, as the primary sees it."""
        rows = self._sql(
            self.primary,
            "SELECT application_name,"
            " COALESCE(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn), -1)::bigint"
            " FROM pg_stat_replication",
        )
        return {str(r[0]): int(str(r[1])) for r in rows}

    # -- faults and recovery -----------------------------------------------------------

    def kill(self, node: Node) -> None:
        """SIGKILL ``node``'s postmaster and every process it started: a node that dies."""
        pid = _postmaster_of(node)
        if pid is None:
            node.role = "down"
            return
        family = [pid, *_children(pid)]
        for p in family:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p, signal.SIGKILL)
        deadline = time.monotonic() + _WAIT_S
        while any(_alive(p) for p in family) and time.monotonic() < deadline:
            time.sleep(0.02)
        if not _alive(pid):
            # A zombie nobody reaps (PID 1 of a container may not) still answers
            # kill(pid, 0): pg_ctl would call it running and refuse to start the node.
            node.db.data_dir.joinpath("postmaster.pid").unlink(missing_ok=True)
            for lock in node.db.socket_dir.glob(".s.PGSQL.*"):
                lock.unlink(missing_ok=True)  # the socket and its lock file, same reason
        self.events.append({"event": "kill", "node": node.name, "t_ns": time.monotonic_ns()})
        node.role = "down"

    def stop_node(self, node: Node) -> None:
        """A clean (fast) shutdown of ``node``: a planned switchover's first step."""
        node.db.stop(mode="fast")
        self.events.append({"event": "stop", "node": node.name, "t_ns": time.monotonic_ns()})
        node.role = "down"

    def promote(self, node: Node) -> None:
        """Promote the standby ``node``; the other standbys follow it.

        In ``sync``/``remote_apply`` mode the new primary waits for the standbys that
        follow it, or for none when none is left: a sync primary without a standby
        would wait for ever on every commit (Patroni relaxes it the same way).
        """
        if node.role != "standby":
            raise DatabaseError(f"{node.name} is {node.role}, not a standby")
        proc = node.db._pg_ctl(["-w", "-t", str(int(_WAIT_S)), "promote"], check=False)
        if proc.returncode != 0:
            raise DatabaseError(f"pg_ctl promote failed: {proc.stderr.strip()}")
        node.role = "primary"
        self.events.append({"event": "promote", "node": node.name, "t_ns": time.monotonic_ns()})
        followers = [n for n in self.standby_nodes() if n is not node]
        for other in followers:
            self.relink(other, self.host, node.port)
        names = [n.name for n in followers]
        sync = "" if self.mode == "async" or not names else f"ANY 1 ({', '.join(names)})"
        self._sql(node, f"ALTER SYSTEM SET synchronous_standby_names = '{sync}'")
        self._sql(node, "SELECT pg_reload_conf()")

    def rejoin(self, node: Node) -> None:
        """Make the old primary ``node`` a standby of the current primary with ``pg_rewind``.

        ``pg_rewind`` winds its data back to where the timelines split (running crash
        recovery first if the node was killed); whatever it committed past that point,
        the lost commits, is gone from it afterwards.
        """
        if node.role != "down":
            raise DatabaseError(f"{node.name} is {node.role}: stop it before a rewind")
        source = self.primary
        proc = node.db._run(
            [
                str(bin_dir() / "pg_rewind"),
                f"--target-pgdata={node.db.data_dir}",
                f"--source-server=host={self.host} port={source.port} user=postgres"
                " dbname=postgres",
                "--no-sync",
            ],
            timeout=_WAIT_S * 2,
        )
        if proc.returncode != 0:
            raise DatabaseError(f"pg_rewind failed: {(proc.stderr or proc.stdout).strip()[-2000:]}")
        self._write_standby_conf(node, self.host, source.port)
        node.db.start()
        node.role = "standby"
        self.events.append({"event": "rejoin", "node": node.name, "t_ns": time.monotonic_ns()})

    @contextlib.contextmanager
    def inspect(self, node: Node) -> Iterator[str]:
        """Start the stopped ``node`` alone on a private port; yield its URL; stop it.

        The port is not in ``url``: the service cannot find it, so a killed primary's
        tables can be read (what it had acknowledged) without a second primary.
        """
        if node.role != "down":
            raise DatabaseError(f"{node.name} is {node.role}: only a stopped node is inspected")
        port = node.db.port
        node.db.port = free_port(self.host)
        node.db._write_port()
        try:
            node.db.start()
            yield node.db.url
        finally:
            node.db.stop(mode="fast")
            node.db.port = port
            node.db._write_port()

    # -- internals ---------------------------------------------------------------------

    def _sql(self, node: Node, sql: str) -> list[tuple[Any, ...]]:
        import psycopg

        with psycopg.connect(node.url, autocommit=True, connect_timeout=5) as conn:
            cur = conn.execute(sql)
            return list(cur.fetchall()) if cur.description else []


def _own(db: EmbeddedPostgres, path: Path) -> None:
    """Give ``path`` to the user the server runs as (when we run as root)."""
    if db._as_user is None:
        return
    ensure_system_user(db._as_user)
    if path.is_dir():
        open_prefixes(path)  # a file's folders are the data directory: kept 0700
    shutil.chown(path, user=db._as_user, group=db._as_user)


def _postmaster_of(node: Node) -> int | None:
    with contextlib.suppress(OSError, IndexError, ValueError):
        pid = int(node.db.data_dir.joinpath("postmaster.pid").read_text().splitlines()[0])
        if _alive(pid):
            return pid
    return None


# -- stopped at exit, like EmbeddedPostgres.create()'s clusters --------------------------

_CLUSTERS: dict[int, ReplicatedCluster] = {}


def _close_clusters_at_exit() -> None:
    for cluster in list(_CLUSTERS.values()):
        try:
            cluster.close()
        except Exception as err:  # at exit: say so, never raise
            log.warning("could not stop the replicated cluster in %s: %s", cluster.base, err)


atexit.register(_close_clusters_at_exit)
os.register_at_fork(after_in_child=_CLUSTERS.clear)
