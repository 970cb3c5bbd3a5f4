"""No password in anything a run writes or shows, nor on a worker's command line.

A cluster of the test's own holds a role whose password the server really checks:
``pg_hba.conf`` requires scram-sha-256 for it over TCP (a connection without the
password is refused, asserted first). The password is given three ways (in the URL,
in ``PGPASSWORD``, in a ``.pgpass`` file named by ``PGPASSFILE``); a real suite run
(one small scenario, both layers) and a ``serve --workers 2`` must work with it, and
the password must appear nowhere: no file under the run folder, no output line, no
log record, no worker's ``/proc/<pid>/cmdline``.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import psycopg
import pytest

from coupon_core.database import EmbeddedPostgres, free_port
from coupon_core.redact import redact_url
from experiments import cli
from tests.procs import children, wait_serving

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
ROLE = "tester"
START_BOUND_S = 60.0
STOP_BOUND_S = 20.0


@dataclass(frozen=True)
class SecretDatabase:
    port: int
    password: str

    def url(self, *, with_password: bool) -> str:
        userinfo = f"{ROLE}:{self.password}" if with_password else ROLE
        return f"postgresql://{userinfo}@127.0.0.1:{self.port}/postgres"


@pytest.fixture(scope="module")
def secret_db() -> Iterator[SecretDatabase]:
    """A cluster where ``tester`` must give its password over TCP (scram-sha-256)."""
    password = f"Pw{secrets.token_hex(10)}"
    db = EmbeddedPostgres.create()
    db.start()
    try:
        with psycopg.connect(db.url, autocommit=True) as conn:
            # Superuser: the scenarios create tables and terminate their own backends.
            conn.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{password}'")
            hba = db.data_dir / "pg_hba.conf"
            # First match wins: these lines go before initdb's "trust" ones.
            rules = (
                f"host all {ROLE} 127.0.0.1/32 scram-sha-256\n"
                f"host all {ROLE} ::1/128 scram-sha-256\n"
            )
            hba.write_text(rules + hba.read_text())
            conn.execute("SELECT pg_reload_conf()")
        yield SecretDatabase(db.port, password)
    finally:
        db.close()


def test_the_password_is_really_required(secret_db: SecretDatabase) -> None:
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(secret_db.url(with_password=False), connect_timeout=5).close()
    with psycopg.connect(secret_db.url(with_password=True), connect_timeout=5) as conn:
        assert conn.execute("SELECT current_user").fetchone() == (ROLE,)


WAYS = ("url", "pgpassword", "pgpassfile")


def _environment(way: str, db: SecretDatabase, tmp: Path) -> tuple[str, dict[str, str]]:
    """The URL to give, and the variables that carry the password if the URL does not."""
    if way == "url":
        return db.url(with_password=True), {}
    if way == "pgpassword":
        return db.url(with_password=False), {"PGPASSWORD": db.password}
    passfile = tmp / "pgpass"
    passfile.write_text(f"127.0.0.1:{db.port}:*:{ROLE}:{db.password}\n")
    passfile.chmod(0o600)  # libpq ignores a .pgpass others can read
    return db.url(with_password=False), {"PGPASSFILE": str(passfile)}


def _hits(password: str, folder: Path) -> list[str]:
    found = []
    for path in sorted(folder.rglob("*")):
        if path.is_file() and password.encode() in path.read_bytes():
            found.append(str(path.relative_to(folder)))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("way", WAYS)
def test_a_suite_run_shows_no_password(
    secret_db: SecretDatabase,
    way: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    url, extra = _environment(way, secret_db, tmp_path)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name, value in extra.items():
        monkeypatch.setenv(name, value)
    caplog.set_level(logging.DEBUG)
    out = tmp_path / "results"
    argv = ["run", "double_dip", "--layer", "both", "--seed", "3", "--hide-code"]
    code = cli.main([*argv, "--out", str(out), "--database-url", url])
    shown = capsys.readouterr()
    assert code == 0, shown
    run_dir = (out / "latest").resolve()
    # Every kind of file a run writes is there to be searched.
    names = {p.suffix for p in run_dir.rglob("*") if p.is_file()}
    assert {".ipynb", ".html", ".json"} <= names, names
    assert _hits(secret_db.password, run_dir) == []
    assert secret_db.password not in shown.out + shown.err
    assert secret_db.password not in caplog.text
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["database"] == redact_url(url)
    if way == "url":
        assert ":***@" in summary["database"]
    # The notebooks got no URL literal: the injected cell names none.
    executed = (run_dir / "notebooks" / "double_dip-http.ipynb").read_text()
    assert "database_url" not in executed.split('"injected-parameters"', 1)[1].split("}", 1)[0]


@pytest.mark.slow
def test_the_rerun_command_reads_the_url_from_the_environment(
    secret_db: SecretDatabase, tmp_path: Path
) -> None:
    url = secret_db.url(with_password=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(
        DATABASE_URL=url,
        PYTHONPATH=str(ROOT),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        COUPON_CHAOS_RESULTS=str(tmp_path / "results"),
    )
    first = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "run", "double_dip", "--seed", "5"],
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert first.returncode == 0, first.stderr
    summary = json.loads((tmp_path / "results" / "latest" / "summary.json").read_text())
    rerun = summary["rerun"]
    assert rerun == 'coupon-chaos run double_dip --database-url "$DATABASE_URL" --seed 5'
    # As a user pastes it: the shell reads the secret from the environment.
    again = subprocess.run(
        rerun,
        shell=True,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert again.returncode == 0, again.stderr
    replayed = json.loads((tmp_path / "results" / "latest" / "summary.json").read_text())
    assert replayed["run_id"] != summary["run_id"]
    assert [s["seed"] for s in replayed["scenarios"]] == [s["seed"] for s in summary["scenarios"]]
    for text in (first.stdout, first.stderr, again.stdout, again.stderr):
        assert secret_db.password not in text
    assert _hits(secret_db.password, tmp_path / "results") == []


def _cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


@pytest.mark.parametrize("way", WAYS)
def test_serve_workers_get_no_password_on_their_command_line(
    secret_db: SecretDatabase, way: str, tmp_path: Path
) -> None:
    url, extra = _environment(way, secret_db, tmp_path)
    # The parent's own argv is the user's choice: the safe one is the environment.
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(extra, DATABASE_URL=url, PYTHONPATH=str(ROOT))
    port = free_port()
    argv = [sys.executable, "-m", "experiments.cli", "serve", "--port", str(port)]
    proc = subprocess.Popen(
        [*argv, "--workers", "2", "--pool-size", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        wait_serving(proc, base, START_BOUND_S)
        workers = children(proc.pid)
        assert len(workers) == 2
        for pid in [proc.pid, *workers]:
            cmdline = _cmdline(pid)
            assert secret_db.password not in cmdline, pid
            assert "postgresql://" not in cmdline, cmdline
        # The workers really log in with the password: a claim goes through.
        name = f"s{secrets.token_hex(4)}"
        with httpx.Client(base_url=base, timeout=10) as c:
            assert c.post("/api/coupons", json={"name": name, "amount": 1}).status_code == 201
            r = c.post("/api/coupons/claim", json={"user_id": "u", "coupon_name": name})
            assert r.status_code == 200
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=STOP_BOUND_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 0, err
    assert secret_db.password not in out + err
    # serve names the database by host, port and name only (experiments.cli_checks.where).
    assert f"database: 127.0.0.1:{secret_db.port} (database postgres)" in out.splitlines()


def test_an_unreachable_url_is_reported_without_its_password(tmp_path: Path) -> None:
    password = f"Pw{secrets.token_hex(10)}"
    url = f"postgresql://{ROLE}:{password}@127.0.0.1:{free_port()}/postgres"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=url, PYTHONPATH=str(ROOT))
    r = subprocess.run(
        [sys.executable, "-m", "experiments.cli", "serve", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        cwd=tmp_path,
        check=False,
    )
    assert r.returncode != 0
    assert password not in r.stdout + r.stderr, shlex.quote(r.stderr)
