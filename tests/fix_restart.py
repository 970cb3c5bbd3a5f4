"""The database-restart fault as a fixture: a database of the test's own, to stop and start.

``own_database`` is a fresh embedded cluster, not the session's: stopping it hurts no
other test, and it runs when the session's database is given by URL too. ``outage``
takes it down and up again by hand (``outage.stop()``, ``outage.start()``: started
again on the same port, so the service's URL still reaches it) or on a timer in a
thread of its own (``outage.restart(delay_s=..., down_s=...)``, the lab's
``DatabaseRestart``). Each step is bounded: pg_ctl waits at most 60 s to stop or to
start, and a start then waits at most 30 s for the first connection. After the test
the fixture stops its timed restarts (which always start the database again) and
closes the cluster, stopped or not. Loaded for every test by ``pytest_plugins`` in
the top-level ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from coupon_core import EmbeddedPostgres
from experiments.faults import DatabaseRestart

__all__ = ["Outage", "outage", "own_database"]


@dataclass
class Outage:
    """Stops and starts ``database``; ``restart()`` does it on a timer."""

    database: EmbeddedPostgres
    _restarts: list[DatabaseRestart] = field(default_factory=list, repr=False)

    @property
    def url(self) -> str:
        return self.database.url

    def stop(self, mode: str = "fast") -> None:
        """Stop the database (``fast`` rolls back open transactions; ``immediate`` crashes it)."""
        self.database.stop(mode=mode)
        assert not self.database.is_running(), "the database did not stop"

    def start(self) -> None:
        """Start it again on its port; returns once it accepts connections."""
        port = self.database.port
        self.database.start()
        assert self.database.port == port, f"restarted on port {self.database.port}, not {port}"

    def restart(self, *, delay_s: float, down_s: float, mode: str = "fast") -> DatabaseRestart:
        """After ``delay_s``, down for ``down_s``, then up: not started (``with`` starts it)."""
        r = DatabaseRestart(self.database, delay_s=delay_s, down_s=down_s, mode=mode)
        self._restarts.append(r)
        return r

    def close(self) -> None:
        for r in self._restarts:
            r.stop()


@pytest.fixture
def own_database() -> Iterator[EmbeddedPostgres]:
    """A fresh embedded cluster, started; stopped and deleted after the test."""
    db = EmbeddedPostgres.create()
    try:
        db.start()
        yield db
    finally:
        db.close()


@pytest.fixture
def outage(own_database: EmbeddedPostgres) -> Iterator[Outage]:
    """Stops and starts the test's own database (``own_database``)."""
    o = Outage(own_database)
    try:
        yield o
    finally:
        o.close()
