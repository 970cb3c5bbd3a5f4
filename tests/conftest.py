"""Shared fixtures: one real embedded PostgreSQL per test session (the chaos gate is in ../conftest.py)."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest

from coupon_core import CouponService, EmbeddedPostgres, ExternalDatabase, ServiceConfig
from coupon_core.database import DatabaseHandle, wait_until_ready


@pytest.fixture(scope="session")
def database() -> Iterator[DatabaseHandle]:
    """The session's database: ``DATABASE_URL`` if set, else a fresh embedded cluster."""
    url = os.environ.get("DATABASE_URL")
    if url:
        wait_until_ready(url)
        yield ExternalDatabase(url)
        return
    db = EmbeddedPostgres.create()
    db.start()
    try:
        yield db
    finally:
        db.close()


@pytest.fixture(scope="session")
def db_url(database: DatabaseHandle) -> str:
    return database.url


@pytest.fixture
def unique() -> str:
    """A run-unique prefix, so tests can share one database."""
    return f"t{uuid.uuid4().hex[:10]}"


@pytest.fixture
def service(db_url: str) -> Iterator[CouponService]:
    svc = CouponService.connect(db_url, ServiceConfig(strategy="row_lock"))
    try:
        yield svc
    finally:
        svc.close()
