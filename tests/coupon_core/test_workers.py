"""Supervised server groups (coupon_core.workers): restarts after a crash, rolling restarts."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from coupon_core.server import ServerError
from coupon_core.workers import WORKER_HEADER, ServerGroup, serve_processes

pytestmark = pytest.mark.chaos

POOL = 2
BOUND_S = 60.0  # generous: worker start-up on a busy 2-core machine


def alive(pid: int) -> bool:
    # A zombie (exited, not yet reaped) still has /proc/<pid>: read its state. (A killed
    # multithreaded process shows Z while its other threads exit, before it can be reaped.)
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def backends(db_url: str, name: str) -> int:
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (name,)
        ).fetchone()
    assert row is not None
    return int(row[0])


def answered_by(url: str, pid: int, tries: int = 400) -> bool:
    """A fresh connection per request (the kernel spreads them): did ``pid`` answer one?"""
    for _ in range(tries):
        r = httpx.get(f"{url}/health", headers={"connection": "close"}, timeout=10)
        assert r.status_code == 200
        if r.headers[WORKER_HEADER] == str(pid):
            return True
    return False


@pytest.fixture
def app(unique: str) -> str:
    return f"coupon-{unique}"


@pytest.fixture
def supervised(db_url: str, app: str) -> Iterator[ServerGroup]:
    with serve_processes(
        db_url, processes=2, pool_size=POOL, supervise=True, application_name=app
    ) as g:
        yield g


def test_every_response_names_its_worker(supervised: ServerGroup) -> None:
    r = httpx.get(f"{supervised.url}/health")
    assert r.status_code == 200
    assert int(r.headers[WORKER_HEADER]) in supervised.pids


def test_killed_worker_is_replaced_and_counted(
    supervised: ServerGroup, db_url: str, app: str
) -> None:
    victim, other = supervised.pids
    assert backends(db_url, f"{app}-{victim}") == POOL
    os.kill(victim, signal.SIGKILL)
    restart = supervised.wait_restart(victim, BOUND_S)
    assert restart is not None, "the supervisor did not replace the killed worker"
    assert (restart.reason, restart.exit_code, restart.error) == ("exited", -signal.SIGKILL, None)
    assert restart.new_pid is not None
    assert restart.ready_s is not None
    assert sorted(supervised.pids) == sorted([restart.new_pid, other])
    assert alive(restart.new_pid)
    assert not alive(victim)
    assert supervised.restarts == 1
    assert supervised.running
    supervised.check()  # supervised: a replaced worker is no error
    # The replacement serves, with a pool of its own; the dead worker's backends went.
    assert answered_by(supervised.url, restart.new_pid)
    assert backends(db_url, f"{app}-{restart.new_pid}") == POOL
    deadline = time.monotonic() + BOUND_S
    while backends(db_url, f"{app}-{victim}") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backends(db_url, f"{app}-{victim}") == 0


def test_rolling_restart_replaces_every_worker_gracefully(supervised: ServerGroup) -> None:
    before = list(supervised.pids)
    made = supervised.rolling_restart()
    assert [r.old_pid for r in made] == before
    # SIGTERM: each old worker shut down cleanly (exit 0), after its replacement was ready.
    assert [(r.reason, r.exit_code, r.error) for r in made] == [("rolling", 0, None)] * 2
    after = supervised.pids
    assert sorted(after) == sorted(r.new_pid for r in made)
    assert not set(after) & set(before)
    assert supervised.restarts == 0  # rolling restarts are not crashes
    assert supervised.running
    supervised.check()
    assert all(answered_by(supervised.url, pid) for pid in after)


def test_supervisor_gives_up_after_max_restarts(db_url: str) -> None:
    with serve_processes(db_url, processes=1, pool_size=1, supervise=True, max_restarts=1) as g:
        (first,) = g.pids
        os.kill(first, signal.SIGKILL)
        restart = g.wait_restart(first, BOUND_S)
        assert restart is not None
        assert restart.new_pid is not None
        os.kill(restart.new_pid, signal.SIGKILL)
        deadline = time.monotonic() + BOUND_S
        with pytest.raises(ServerError, match="not restarted: 1 restarts already"):  # noqa: PT012
            while time.monotonic() < deadline:
                g.check()
                time.sleep(0.05)
        assert g.restarts == 1


def test_unsupervised_group_reports_a_dead_worker(db_url: str) -> None:
    with serve_processes(db_url, processes=2, pool_size=1) as g:
        victim = g.pids[0]
        os.kill(victim, signal.SIGKILL)
        # Not /proc's state: a multithreaded leader shows Z before it can be reaped.
        deadline = time.monotonic() + BOUND_S
        while g.exit_codes[victim] is None and time.monotonic() < deadline:
            time.sleep(0.02)
        with pytest.raises(ServerError, match=f"worker {victim} exited with code -9"):
            g.check()
        assert g.restarts == 0
        assert not g.supervised
