"""Supervised server groups (coupon_core.workers): restarts after a crash, rolling restarts."""

from __future__ import annotations

import http.client
import os
import signal
import socket
import subprocess
import sys
import threading
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


def test_serve_restarts_a_killed_worker_and_says_so(db_url: str, tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = str(root)
    err_path = tmp_path / "stderr"
    with err_path.open("w") as err:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "experiments.cli",
                "serve",
                "--port",
                "0",
                "--database-url",
                db_url,
                "--workers",
                "2",
                "--pool-size",
                "1",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            cwd=root,
            process_group=0,
        )
    try:
        assert proc.stdout is not None
        pids: list[int] = []
        deadline = time.monotonic() + BOUND_S
        while not pids and time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"serve exited: {err_path.read_text()}"
            if line.startswith("worker pids: "):
                pids = [int(p) for p in line.removeprefix("worker pids: ").split()]
        victim = pids[0]
        os.kill(victim, signal.SIGKILL)
        while "replaced by" not in err_path.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        logged = err_path.read_text()
        assert f"worker {victim} exited with code -9; restarting it" in logged
        assert f"worker {victim} replaced by " in logged
        assert "(restart 1)" in logged
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, err_path.read_text()
        assert out.splitlines()[-2:] == ["worker restarts: 1", "stopped"]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _serve(db_url: str, err_path: Path, *options: str) -> subprocess.Popen[str]:
    root = Path(__file__).resolve().parents[2]
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=db_url, PYTHONPATH=str(root))
    argv = [sys.executable, "-m", "experiments.cli", "serve", "--port", "0", *options]
    with err_path.open("w") as err:
        return subprocess.Popen(
            argv,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            cwd=root,
            process_group=0,
        )


def _line(proc: subprocess.Popen[str], prefix: str, deadline: float, err_path: Path) -> str:
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        assert line, f"serve exited: {err_path.read_text()}"
        if line.startswith(prefix):
            return line.strip()
    raise AssertionError(f"no line {prefix!r} in time")


def _claim_loop(
    url: str, coupon: str, worker: int, stop: threading.Event, failures: list[str], ok: list[int]
) -> None:
    """Claims on one kept-alive connection (a new one after ``Connection: close``)."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    conn: http.client.HTTPConnection | None = None
    for step in range(5_000):  # bounded in count as well as time
        if stop.is_set():
            break
        conn = conn or http.client.HTTPConnection(host, int(port), timeout=10)
        body = f'{{"user_id": "u{worker}-{step}", "coupon_name": "{coupon}"}}'
        try:
            conn.request("POST", "/api/coupons/claim", body, {"Content-Type": "application/json"})
            r = conn.getresponse()
            r.read()
            if r.status == 200:
                ok.append(1)
            else:
                failures.append(f"status {r.status}")
            if r.will_close:
                conn.close()
                conn = None
        except (OSError, http.client.HTTPException) as err:
            failures.append(f"{type(err).__name__}: {err}")
            conn.close()
            conn = None
    if conn is not None:
        conn.close()


def test_sighup_rolls_serve_workers_under_load_without_a_failed_request(
    db_url: str, tmp_path: Path, unique: str
) -> None:
    # Before: SIGHUP's default action killed serve (and its workers followed it).
    err_path = tmp_path / "stderr"
    proc = _serve(db_url, err_path, "--workers", "2", "--pool-size", "2")
    try:
        deadline = time.monotonic() + BOUND_S
        url = _line(proc, "serving on ", deadline, err_path).split()[2]
        before = _line(proc, "worker pids: ", deadline, err_path).split()[2:]
        with psycopg.connect(db_url, autocommit=True) as conn:
            conn.execute(
                "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, 100000, 100000)",
                (unique,),
            )
        stop = threading.Event()
        failures: list[str] = []
        ok: list[int] = []
        threads = [
            threading.Thread(
                target=_claim_loop, args=(url, unique, w, stop, failures, ok), daemon=True
            )
            for w in range(8)
        ]
        for t in threads:
            t.start()
        time.sleep(1.0)
        during = len(ok)
        proc.send_signal(signal.SIGHUP)
        done = _line(proc, "rolling restart done", deadline, err_path)
        after = _line(proc, "worker pids: ", deadline, err_path).split()[2:]
        time.sleep(0.5)
        stop.set()
        for t in threads:
            t.join(30)
        assert during > 0, "no load before the SIGHUP"
        assert len(ok) > during, "no claim went through during and after the roll"
        assert failures == [], (
            f"{len(failures)} failed of {len(ok) + len(failures)}: {failures[:5]}"
        )
        assert not set(before) & set(after), (before, after, done)
        assert len(after) == 2
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, err_path.read_text()
        assert out.splitlines()[-1] == "stopped"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def test_a_connection_made_while_the_worker_is_down_waits_for_its_replacement(
    db_url: str,
) -> None:
    # The group holds each worker's listening socket: a connection that arrives while
    # its worker is dead waits in the queue for the replacement (before: the port had
    # no listener, and the kernel reset connections queued on the dying one).
    with serve_processes(db_url, processes=1, pool_size=1, supervise=True) as g:
        (victim,) = g.pids
        os.kill(victim, signal.SIGKILL)
        deadline = time.monotonic() + BOUND_S
        while g.exit_codes.get(victim, 0) is None and time.monotonic() < deadline:
            time.sleep(0.01)
        with socket.create_connection((g.host, g.port), timeout=BOUND_S) as sock:
            sock.settimeout(BOUND_S)
            sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        assert answer.startswith(b"HTTP/1.1 200 "), answer
        restart = g.wait_restart(victim, BOUND_S)
        assert restart is not None
        assert f"{WORKER_HEADER}: {restart.new_pid}".encode() in answer
