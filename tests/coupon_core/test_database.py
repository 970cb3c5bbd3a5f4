"""The embedded PostgreSQL and the one place that chooses a database."""

from __future__ import annotations

import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from coupon_core.database import (
    DatabaseError,
    EmbeddedPostgres,
    ExternalDatabase,
    Owner,
    free_port,
    provision,
    reap_orphans,
    wait_until_ready,
)

# Database starts and child processes, seconds each: out of `make unit`, in `make test`.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# A child that makes a cluster, says where, then waits to be killed or exits.
CHILD = """
import sys, time
from coupon_core.database import EmbeddedPostgres

db = EmbeddedPostgres.create()
db.start()
print(db.data_dir.parent, db.port, flush=True)
if sys.argv[1] == "wait":
    time.sleep(600)
"""
CHILD_BOUND_S = 90.0


def test_embedded_lifecycle_keeps_data_and_port(temp_root: Path) -> None:
    db = EmbeddedPostgres(data_dir=temp_root / "data")
    t0 = time.monotonic()
    db.start()
    fresh_s = time.monotonic() - t0
    try:
        assert db.is_running()
        port = db.port
        assert db.url == f"postgresql://postgres@127.0.0.1:{port}/postgres"
        with psycopg.connect(db.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE kept (v int)")
            conn.execute("INSERT INTO kept VALUES (42)")
            max_conn = conn.execute("SHOW max_connections").fetchone()
        assert max_conn == ("700",)
        db.stop()
        assert not db.is_running()
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(db.url, connect_timeout=2).close()
        t0 = time.monotonic()
        db.start()
        existing_s = time.monotonic() - t0
        assert db.port == port
        with psycopg.connect(db.url) as conn:
            assert conn.execute("SELECT v FROM kept").fetchone() == (42,)
        # A second handle on the same directory finds the running server and its port.
        again = EmbeddedPostgres(data_dir=temp_root / "data")
        again.start()
        assert again.port == port
    finally:
        db.close()
    assert not db.is_running()
    assert (temp_root / "data" / "PG_VERSION").exists()  # not created by create(): kept
    print(f"embedded start: fresh {fresh_s:.2f}s, existing {existing_s:.2f}s")


def test_create_deletes_its_directory_on_close() -> None:
    with EmbeddedPostgres.create() as db:
        base = db.data_dir.parent
        assert db.is_running()
        db.restart()
        wait_until_ready(db.url, timeout=5)
    assert not base.exists()


def test_wait_until_ready_gives_up_with_database_error() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    start = time.monotonic()
    with pytest.raises(DatabaseError, match="database not ready after 1s"):
        wait_until_ready(url, timeout=1.0)
    assert time.monotonic() - start < 5.0


def test_provision_prefers_the_url(db_url: str) -> None:
    handle = provision(db_url)
    assert isinstance(handle, ExternalDatabase)
    assert handle.url == db_url
    assert not handle.restartable
    with pytest.raises(DatabaseError, match="cannot stop a database given by URL"):
        handle.stop()
    handle.close()


def test_provision_reads_database_url(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", db_url)
    handle = provision()
    assert isinstance(handle, ExternalDatabase)
    assert handle.url == db_url


# -- ephemeral clusters: owner record, stop at exit, reaping ---------------------------


@pytest.fixture
def temp_root() -> Iterator[Path]:
    """A temp root of the test's own (short: the socket path must fit 107 bytes).

    Reaping the system temp directory would meet other runs' clusters; this one holds
    only the test's. Not under pytest's tmp_path either: a pytest run that starts
    meanwhile resets pytest-of-<user> to 0700, and the server's system user (when we
    run as root) could no longer reach its data. Whatever a failed test left here is
    reaped (its owners are dead by then) and the root deleted.
    """
    root = Path(tempfile.mkdtemp(prefix="ccr-"))
    yield root
    reap_orphans(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def owners(temp_root: Path) -> Iterator[list[subprocess.Popen[str]]]:
    """Child processes; any still running at the end is killed (before temp_root reaps)."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate(timeout=10)


def spawn_owner(
    owners: list[subprocess.Popen[str]], root: Path, mode: str
) -> tuple[subprocess.Popen[str], Path, int]:
    """A child process that owns a started cluster under ``root``: (child, directory, port)."""
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(PYTHONPATH=str(ROOT), TMPDIR=str(root))
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, mode],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    owners.append(child)
    assert child.stdout is not None
    ready, _, _ = select.select([child.stdout], [], [], CHILD_BOUND_S)
    line = child.stdout.readline() if ready else ""
    if not line:
        child.kill()
        pytest.fail(f"the child did not start its cluster: {child.communicate(timeout=10)}")
    base, port = line.split()
    return child, Path(base), int(port)


def accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return False
    return True


def age(path: Path, seconds: float) -> None:
    """Make ``path`` and everything in it look untouched for ``seconds``."""
    then = time.time() - seconds
    for item in [path, *path.rglob("*")]:
        os.utime(item, (then, then), follow_symlinks=False)


def wait_for_no_clients(url: str, timeout: float = 10.0) -> None:
    """Until the server has no client but the one asking (a closed one leaves late)."""
    deadline = time.monotonic() + timeout
    while True:
        with psycopg.connect(url, connect_timeout=5) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_activity"
                " WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
            ).fetchone()
        if row == (0,):
            return
        assert time.monotonic() < deadline, f"clients still connected: {row}"
        time.sleep(0.05)


@pytest.mark.parametrize("pg_ctl", ["works", "fails"])
def test_a_sigkilled_owner_leaves_an_orphan_that_reaping_stops(
    owners: list[subprocess.Popen[str]],
    temp_root: Path,
    pg_ctl: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    child, base, port = spawn_owner(owners, temp_root, "wait")
    owner = Owner.read(base)
    assert owner is not None
    assert owner.pid == child.pid
    child.send_signal(signal.SIGKILL)  # no atexit, no finally: the postmaster is on its own
    child.wait(10)
    assert accepts(port), "the orphaned postmaster should still listen"
    with psycopg.connect(f"postgresql://postgres@127.0.0.1:{port}/postgres") as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
    if pg_ctl == "fails":  # then the postmaster, checked to be ours, is SIGKILLed

        def failing(*args: object, **kwargs: object) -> subprocess.CompletedProcess[str]:
            return subprocess.CompletedProcess(["pg_ctl"], 1, "", "pg_ctl: failed")

        monkeypatch.setattr(EmbeddedPostgres, "_pg_ctl", failing)
    t0 = time.monotonic()
    assert reap_orphans(temp_root) == [base]
    assert time.monotonic() - t0 < 30.0
    assert not base.exists()
    assert not accepts(port)
    killed = [r.message for r in caplog.records if "killing it" in r.message]
    assert len(killed) == (pg_ctl == "fails")
    assert reap_orphans(temp_root) == []


def test_a_normal_exit_without_close_stops_the_cluster(
    owners: list[subprocess.Popen[str]], temp_root: Path
) -> None:
    child, base, port = spawn_owner(owners, temp_root, "exit")
    _, err = child.communicate(timeout=60)  # atexit's stop is bounded well below this
    assert child.returncode == 0, err
    assert "Traceback" not in err
    assert not base.exists()
    assert not accepts(port)


def test_reaping_spares_a_live_owner_and_a_young_unrecorded_directory(temp_root: Path) -> None:
    db = EmbeddedPostgres.create(temp_root=temp_root)
    mine = db.data_dir.parent
    try:
        db.start()
        assert Owner.read(mine) == Owner.current()
        young = temp_root / "coupon-chaos-pg-young"  # unrecorded, just made: spared
        young.joinpath("data").mkdir(parents=True)
        foreign = temp_root / "coupon-chaos-pg-foreign"  # not what create() makes: spared
        foreign.joinpath("notes").mkdir(parents=True)
        age(foreign, 3600)
        stale = temp_root / "coupon-chaos-pg-stale"  # unrecorded, idle, no server: reaped
        stale.joinpath("data").mkdir(parents=True)
        age(stale, 3600)
        reused = temp_root / "coupon-chaos-pg-reused"  # our pid, another start: reaped
        reused.joinpath("data").mkdir(parents=True)
        me = Owner.current()
        assert me.start_ticks is not None
        Owner(me.pid, me.start_ticks - 1, me.pid_ns).write(reused)

        assert reap_orphans(temp_root) == [reused, stale]
        assert young.exists()
        assert foreign.exists()
        with psycopg.connect(db.url, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        # The database_restart fault stops and starts it in place: still ours after.
        db.restart()
        assert Owner.read(mine) == Owner.current()
        assert reap_orphans(temp_root) == []
        with psycopg.connect(db.url, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        db.close()
    assert not mine.exists()


def test_an_unrecorded_idle_cluster_is_reaped_only_without_clients(temp_root: Path) -> None:
    # As a cluster made before owners were recorded: no record, idle for an hour.
    db = EmbeddedPostgres.create(temp_root=temp_root)
    base = db.data_dir.parent
    try:
        db.start()
        base.joinpath("owner").unlink()
        with psycopg.connect(db.url, connect_timeout=5) as conn:
            age(base, 3600)
            assert reap_orphans(temp_root) == []  # someone is connected: in use
            assert conn.execute("SELECT 1").fetchone() == (1,)
        wait_for_no_clients(db.url)
        age(base, 3600)
        assert reap_orphans(temp_root) == [base]
        assert not base.exists()
        assert not accepts(db.port)
    finally:
        db.close()
