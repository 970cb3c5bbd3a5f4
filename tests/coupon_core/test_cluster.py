"""The replicated cluster: start, replicate, kill, promote, inspect, rewind, teardown, reaping."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.cluster import ReplicatedCluster, multi_host_url
from coupon_core.database import DatabaseError, reap_orphans, replicated
from coupon_core.errors import Unavailable
from coupon_core.schema import apply_schema

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
CHILD = """
import time
from coupon_core.database import replicated
c = replicated(standbys=1, mode="sync")
print(c.base, *(n.port for n in c.nodes), flush=True)
time.sleep(600)
"""
CHILD_BOUND_S = 120.0


@pytest.fixture
def temp_root() -> Iterator[Path]:
    """A short temp root of the test's own; whatever a failed test left is reaped."""
    root = Path(tempfile.mkdtemp(prefix="ccr-"))
    yield root
    reap_orphans(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def cluster(temp_root: Path) -> Iterator[ReplicatedCluster]:
    c = replicated(standbys=1, mode="sync", temp_root=temp_root)
    try:
        yield c
    finally:
        c.close()


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


def rows(url: str, sql: str) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        return list(conn.execute(sql).fetchall())


def test_multi_host_url_lists_every_node() -> None:
    url = multi_host_url([5001, 5002], target_session_attrs="read-write")
    assert url == (
        "postgresql://postgres@127.0.0.1:5001,127.0.0.1:5002/postgres"
        "?target_session_attrs=read-write"
    )


def test_bad_mode_and_standby_count_are_refused(temp_root: Path) -> None:
    with pytest.raises(DatabaseError, match="unknown replication mode"):
        ReplicatedCluster.create(mode="eventual", temp_root=temp_root)
    with pytest.raises(DatabaseError, match="standbys must be 1 or 2"):
        ReplicatedCluster.create(standbys=3, temp_root=temp_root)
    assert list(temp_root.iterdir()) == []  # refused before anything was made


def test_life_cycle_replicate_kill_promote_inspect_rewind(cluster: ReplicatedCluster) -> None:
    old, standby = cluster.nodes
    assert (old.role, standby.role) == ("primary", "standby")
    assert rows(cluster.url, "SELECT pg_is_in_recovery()") == [(False,)]
    assert rows(standby.url, "SELECT pg_is_in_recovery()") == [(True,)]
    assert rows(old.url, "SHOW synchronous_standby_names") == [("ANY 1 (node1)",)]
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (v int)")
        # Mode sync (synchronous_commit = on) waits for the standby's flush, not its
        # replay: a read there could still miss the row (it did once, under load). This
        # session waits for the replay, so the standby shows it when the insert returns.
        conn.execute("SET synchronous_commit = remote_apply")
        conn.execute("INSERT INTO kept VALUES (1)")
    assert rows(standby.url, "SELECT v FROM kept") == [(1,)]

    cluster.kill(old)
    assert not accepts(old.port)
    cluster.promote(standby)
    assert cluster.primary is standby
    # The multi-host URL finds the new primary; with no standby left it does not wait for one.
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        assert conn.info.port == standby.port
        conn.execute("INSERT INTO kept VALUES (2)")
    assert rows(standby.url, "SHOW synchronous_standby_names") == [("",)]

    with cluster.inspect(old) as old_url:  # alone, on a port the URL does not list
        assert rows(old_url, "SELECT v FROM kept ORDER BY v") == [(1,)]
    assert old.role == "down"

    cluster.rejoin(old)
    cluster.wait_streaming()
    cluster.wait_caught_up()
    assert old.role == "standby"
    assert rows(old.url, "SELECT v FROM kept ORDER BY v") == [(1,), (2,)]
    assert rows(old.url, "SELECT pg_is_in_recovery()") == [(True,)]


def test_close_stops_every_node_and_deletes_the_directory(temp_root: Path) -> None:
    c = replicated(standbys=2, mode="async", temp_root=temp_root)
    ports = [n.port for n in c.nodes]
    assert len(ports) == 3
    assert all(accepts(p) for p in ports)
    assert sorted(c.lag_bytes()) == ["node1", "node2"]
    c.close()
    assert not any(accepts(p) for p in ports)
    assert not c.base.exists()


def test_a_sigkilled_owner_leaves_nodes_that_reaping_stops(temp_root: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT), TMPDIR=str(temp_root))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    try:
        assert child.stdout is not None
        ready, _, _ = select.select([child.stdout], [], [], CHILD_BOUND_S)
        line = child.stdout.readline() if ready else ""
        assert line, f"the child did not start its cluster: {child.stderr}"
        base, *raw_ports = line.split()
        ports = [int(p) for p in raw_ports]
        assert all(accepts(p) for p in ports)
        child.send_signal(signal.SIGKILL)  # skips atexit: the nodes stay up, orphaned
        child.wait(timeout=30)
        assert all(accepts(p) for p in ports), "the orphaned nodes should still listen"
        assert reap_orphans(temp_root) == [Path(base)]
        assert not any(accepts(p) for p in ports)
        assert not Path(base).exists()
    finally:
        if child.poll() is None:
            child.kill()
        child.communicate(timeout=10)


def test_the_pool_rides_a_failover(cluster: ReplicatedCluster, unique: str) -> None:
    """Connections to the dead primary are dropped; new ones find the promoted standby."""
    config = ServiceConfig(pool_min=2, pool_max=4, pool_timeout=1.0)
    with CouponService.connect(cluster.url, config) as svc:
        # Stock for every claim below: with no refusal at all (the pool's writable check
        # at getconn found the promoted standby before the first claim, seen once under
        # load) the eleventh claim must not meet an empty coupon.
        stock = 20
        svc.create(f"{unique}-c", stock)
        svc.claim("u1", f"{unique}-c")
        old, standby = cluster.nodes
        cluster.kill(old)
        cluster.promote(standby)
        outcomes = []
        for i in range(2, 12):  # bounded: a few refusals at most, then the new primary
            try:
                svc.claim(f"u{i}", f"{unique}-c")
                outcomes.append("ok")
            except Unavailable:
                outcomes.append("unavailable")
        assert "ok" in outcomes, outcomes
        first_ok = outcomes.index("ok")
        assert all(o == "ok" for o in outcomes[first_ok:]), outcomes
        view = svc.get(f"{unique}-c")
        assert "u1" in view.claimed_by
        assert view.remaining_amount == stock - len(view.claimed_by)


def test_writes_on_a_standby_are_unavailable_not_internal_errors(
    cluster: ReplicatedCluster, unique: str
) -> None:
    standby = cluster.nodes[1]
    apply_schema(cluster.url)
    cluster.wait_caught_up()
    config = ServiceConfig(pool_min=1, pool_max=2, pool_timeout=1.0, apply_schema=False)
    with CouponService.connect(standby.url, config) as svc:
        with pytest.raises(Unavailable, match="read-only"):
            svc.create(f"{unique}-x", 1)
        assert svc.pool_stats().get("pool_size", 0) <= 2


def test_read_url_sends_gets_to_the_standby(cluster: ReplicatedCluster, unique: str) -> None:
    standby = cluster.nodes[1]
    config = ServiceConfig(pool_min=1, pool_max=2)
    with CouponService.connect(cluster.url, config, read_url=standby.url) as svc:
        assert svc.read_pool is not None
        svc.create(f"{unique}-r", 3)
        svc.claim("u1", f"{unique}-r")  # sync: on the standby once acknowledged
        cluster.wait_caught_up()
        assert svc.get(f"{unique}-r").claimed_by == ["u1"]
        with svc.read_pool.connection() as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
