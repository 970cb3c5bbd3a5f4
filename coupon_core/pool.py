"""A psycopg connection pool that hands out its most recently used idle connection."""

from __future__ import annotations

import psycopg_pool
from psycopg_pool.abc import CT

__all__ = ["LifoConnectionPool"]


class LifoConnectionPool(psycopg_pool.ConnectionPool[CT]):
    """``ConnectionPool``, but last in, first out for idle connections.

    psycopg_pool takes an idle connection from the left of its deque and returns it to
    the right: first in, first out, so a pool larger than its load rotates through
    every connection, each one's backend gone cold (its caches, its CPU) by the time
    it comes round again. Taking from the right keeps the load on the connections it
    needs, and leaves the rest at the left, where the pool's shrinking closes them
    first. Measured, service layer, atomic, 3 alternating rounds each on a loaded
    2-core machine: 1 thread on a pool of 64, 240-277 claims/s first in first out
    against 1874-2585 last in first out (a pool of 1: 1128-2652); 16 threads on 64
    coupons, 2989-5956 against 5434-8786 (a pool of 16: 3479-8041).

    Only where an idle connection is picked changes (``_get_ready_connection``, the
    pool's one place that takes from its idle deque for a caller); waiting, timeouts,
    checks and resets are the pool's own. ``tests/coupon_core/test_pool.py`` fails if a
    new psycopg_pool stops calling it.
    """

    def _get_ready_connection(self, timeout: float | None) -> CT | None:
        if self._pool and not (timeout is not None and timeout <= 0.0):
            conn = self._pool.pop()
            if len(self._pool) < self._nconns_min:
                self._nconns_min = len(self._pool)
            return conn
        return super()._get_ready_connection(timeout)
