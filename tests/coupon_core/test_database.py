"""The embedded PostgreSQL and the one place that chooses a database."""

from __future__ import annotations

import time
from pathlib import Path

import psycopg
import pytest

from coupon_core.database import (
    DatabaseError,
    EmbeddedPostgres,
    ExternalDatabase,
    free_port,
    provision,
    wait_until_ready,
)


def test_embedded_lifecycle_keeps_data_and_port(tmp_path: Path) -> None:
    db = EmbeddedPostgres(data_dir=tmp_path / "data")
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
        again = EmbeddedPostgres(data_dir=tmp_path / "data")
        again.start()
        assert again.port == port
    finally:
        db.close()
    assert not db.is_running()
    assert (tmp_path / "data" / "PG_VERSION").exists()  # not created by create(): kept
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
