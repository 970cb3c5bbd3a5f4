"""The ``serve`` and ``db`` subcommands as a user runs them: real subprocesses, real signals."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from coupon_core.database import Owner, free_port
from tests.procs import children, wait_serving

# Subprocesses and database starts, seconds each: out of `make unit`, in `make test`.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "experiments.cli"]
START_BOUND_S = 30.0
STOP_BOUND_S = 15.0


def env(**extra: str) -> dict[str, str]:
    e = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    e["PYTHONPATH"] = str(ROOT)
    e.update(extra)
    return e


def cli(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, timeout=60, env=env(**extra), cwd=ROOT
    )


@pytest.fixture
def serve() -> Iterator[list[subprocess.Popen[str]]]:
    """Started servers; any still running at the end is killed."""
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(10)


def start(procs: list[subprocess.Popen[str]], *args: str) -> tuple[subprocess.Popen[str], str]:
    port = free_port()
    p = subprocess.Popen(
        [*CLI, "serve", "--port", str(port), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env(),
        cwd=ROOT,
    )
    procs.append(p)
    url = f"http://127.0.0.1:{port}"
    wait_serving(p, url, START_BOUND_S)
    return p, url


def stop(p: subprocess.Popen[str], sig: signal.Signals) -> tuple[int, str, str]:
    p.send_signal(sig)
    out, err = p.communicate(timeout=STOP_BOUND_S)
    return p.returncode, out, err


def test_serve_on_url_then_sigterm(
    serve: list[subprocess.Popen[str]], db_url: str, unique: str
) -> None:
    p, url = start(serve, "--database-url", db_url, "--strategy", "atomic", "--pool-size", "5")
    with httpx.Client(base_url=url) as c:
        assert c.post("/api/coupons", json={"name": unique, "amount": 2}).status_code == 201
        r = c.post("/api/coupons/claim", json={"user_id": "u", "coupon_name": unique})
        assert r.status_code == 200
        assert c.get(f"/api/coupons/{unique}").json()["claimed_by"] == ["u"]
    code, out, err = stop(p, signal.SIGTERM)
    assert code == 0, err
    assert f"serving on {url} (strategy atomic)" in out
    assert "Traceback" not in err


def test_serve_embedded_then_ctrl_c(serve: list[subprocess.Popen[str]], unique: str) -> None:
    p, url = start(serve)
    assert httpx.post(f"{url}/api/coupons", json={"name": unique, "amount": 1}).status_code == 201
    code, out, err = stop(p, signal.SIGINT)
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("database: embedded PostgreSQL at postgresql://")
    assert lines[1] == f"serving on {url} (strategy row_lock)"
    assert "Traceback" not in err
    # The embedded database went with it: its port no longer answers.
    db_port = int(lines[0].rsplit(":", 1)[1].split("/")[0])
    import socket

    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", db_port), timeout=2),
    ):
        pass


def test_serve_worker_processes_then_sigterm(
    serve: list[subprocess.Popen[str]], db_url: str, unique: str
) -> None:
    p, url = start(serve, "--database-url", db_url, "--workers", "2", "--pool-size", "2")
    workers = children(p.pid)
    assert len(workers) == 2
    with httpx.Client(base_url=url) as c:
        assert c.get("/health").status_code == 200
        assert c.post("/api/coupons", json={"name": unique, "amount": 1}).status_code == 201
        r = c.post("/api/coupons/claim", json={"user_id": "u", "coupon_name": unique})
        assert r.status_code == 200
    code, out, err = stop(p, signal.SIGTERM)
    assert code == 0, err
    lines = out.splitlines()
    assert f"serving on {url} (strategy row_lock, 2 worker processes)" in lines
    printed = [line.removeprefix("worker pids: ") for line in lines if "pids:" in line]
    assert [sorted(map(int, pids.split())) for pids in printed] == [workers]
    assert lines[-1] == "stopped"
    assert "Traceback" not in err
    assert not any(Path(f"/proc/{pid}").exists() for pid in workers)


@pytest.fixture
def own_tmp() -> Iterator[Path]:
    """A short temp directory outside pytest's.

    A pytest run that starts meanwhile resets pytest-of-<user> to 0700, and the
    server's system user (when we run as root) could no longer reach its data
    directory there: ``pg_ctl status`` fails and a running server looks stopped.
    """
    path = Path(tempfile.mkdtemp(prefix="ccc-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_db_up_url_down(own_tmp: Path) -> None:
    home = str(own_tmp / "home")
    r = cli("db", "url", COUPON_CHAOS_HOME=home)
    assert r.returncode == 1
    assert r.stdout == ""
    assert "no database running" in r.stderr
    assert "Traceback" not in r.stderr
    try:
        r = cli("db", "up", COUPON_CHAOS_HOME=home)
        assert r.returncode == 0, r.stderr
        url = r.stdout.strip()
        assert url.startswith("postgresql://postgres@127.0.0.1:")
        assert (own_tmp / "home" / "db" / "data" / "PG_VERSION").exists()
        # Between commands it keeps running, and `db url` prints only the URL.
        r = cli("db", "url", COUPON_CHAOS_HOME=home)
        assert (r.returncode, r.stdout) == (0, url + "\n")
        assert cli("db", "up", COUPON_CHAOS_HOME=home).stdout.strip() == url
        r = cli("db", "status", COUPON_CHAOS_HOME=home)
        assert r.returncode == 0
        assert url in r.stdout
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        r = cli("db", "down", COUPON_CHAOS_HOME=home)
    assert (r.returncode, r.stdout) == (0, "stopped\n")
    assert cli("db", "url", COUPON_CHAOS_HOME=home).returncode == 1
    assert cli("db", "status", COUPON_CHAOS_HOME=home).returncode == 1
    assert cli("db", "down", COUPON_CHAOS_HOME=home).returncode == 0


def test_db_reap_prints_what_it_reaped_and_spares_db_up(own_tmp: Path) -> None:
    # A temp root of the test's own, with `db up`'s home in it and the directory of
    # an owner that died: a process that recorded itself as owner, then exited (the
    # record alone makes it an orphan; no server needed).
    root = own_tmp
    dead = root / "coupon-chaos-pg-dead"
    dead.joinpath("data").mkdir(parents=True)
    record = "import sys, pathlib; from coupon_core.database import Owner; "
    record += "Owner.current().write(pathlib.Path(sys.argv[1]))"
    subprocess.run([sys.executable, "-c", record, str(dead)], env=env(), timeout=30, check=True)
    assert Owner.read(dead) is not None
    home = str(root / "coupon-chaos-pg-h")  # named like one, but not what create() makes
    try:
        r = cli("db", "up", COUPON_CHAOS_HOME=home)
        assert r.returncode == 0, r.stderr
        url = r.stdout.strip()
        then = time.time() - 3600  # and idle for an hour, as far as mtimes tell
        for item in [Path(home), *Path(home).rglob("*")]:
            os.utime(item, (then, then), follow_symlinks=False)
        r = cli("db", "reap", TMPDIR=str(root), COUPON_CHAOS_HOME=home)
        assert (r.returncode, r.stdout) == (0, f"reaped {dead}\n1 orphaned cluster reaped\n")
        assert "Traceback" not in r.stderr
        assert not dead.exists()
        r = cli("db", "reap", TMPDIR=str(root), COUPON_CHAOS_HOME=home)
        assert (r.returncode, r.stdout) == (0, "0 orphaned clusters reaped\n")
        # `db up`'s cluster is not ephemeral: the reaps left it running.
        assert cli("db", "url", COUPON_CHAOS_HOME=home).stdout.strip() == url
        import psycopg

        with psycopg.connect(url, connect_timeout=5) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
    finally:
        r = cli("db", "down", COUPON_CHAOS_HOME=home)
    assert (r.returncode, r.stdout) == (0, "stopped\n")


@pytest.mark.parametrize(
    "args",
    [
        ["serve", "--port", "abc"],
        ["serve", "--port", "70000"],
        ["serve", "--strategy", "nope"],
        ["serve", "--pool-size", "0"],
        ["serve", "--workers", "0"],
        ["serve", "--bogus"],
        ["db"],
        ["db", "sideways"],
        ["nosuchcommand"],
    ],
)
def test_bad_arguments_exit_2_with_one_line(args: list[str]) -> None:
    r = cli(*args)
    assert r.returncode == 2
    assert r.stderr.startswith("coupon-chaos")
    assert r.stderr.endswith("--help)\n")
    assert r.stderr.count("\n") == 1
    assert "Traceback" not in r.stderr


@pytest.mark.parametrize("workers", ["1", "2"])
def test_unreachable_database_is_one_line(workers: str) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    r = cli("serve", "--port", str(free_port()), "--database-url", url, "--workers", workers)
    assert r.returncode == 1
    port = url.split(":")[-1].split("/")[0]
    assert r.stderr == (
        f"coupon-chaos: cannot reach the database at 127.0.0.1:{port} (database postgres):"
        " Connection refused\n"
    )
