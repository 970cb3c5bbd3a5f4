"""The network fault as a fixture: a TCP proxy in front of the session's database.

After psycopg's ``tests/fix_proxy.py``. A test reaches the database through
``proxy.conninfo(db_url)`` and switches the proxy's phases (``latency``, ``throttle``,
``stall``, ``reset``, back to ``pass``) while it runs. After the test the fixture stops
the proxy within ``STOP_BOUND_S`` and fails the test if one of its threads (the
acceptor, a connection's two pumps) outlives the stop. Loaded for every test by
``pytest_plugins`` in the top-level ``conftest.py``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

import pytest

from experiments.faults import TcpProxy

__all__ = ["SEED", "STOP_BOUND_S", "proxy", "running_proxy"]

SEED = 3
# stop() joins the acceptor and each connection's pumps, each within 5 s; a stop that
# takes longer than this is a pump stuck on a socket, which the test must show.
STOP_BOUND_S = 15.0


@contextlib.contextmanager
def running_proxy(url: str, seed: int = SEED) -> Iterator[TcpProxy]:
    """A started TcpProxy in front of ``url``; on leaving, stopped, every thread of it gone."""
    p = TcpProxy.for_url(url, seed=seed).start()
    try:
        yield p
    finally:
        threads = p.threads  # before stop() forgets the connections
        start = time.monotonic()
        p.stop()
        took = time.monotonic() - start
    alive = [t.name for t in threads if t.is_alive()]
    assert not alive, f"proxy threads outlived stop(): {alive}"
    assert took < STOP_BOUND_S, f"the proxy took {took:.1f}s to stop"


@pytest.fixture
def proxy(db_url: str) -> Iterator[TcpProxy]:
    """A started TcpProxy (seed ``SEED``, phase ``pass``) in front of ``db_url``."""
    with running_proxy(db_url) as p:
        yield p
