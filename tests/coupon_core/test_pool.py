"""The service's pool hands out its most recently returned idle connection."""

from __future__ import annotations

import psycopg_pool
import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.pool import LifoConnectionPool


def test_the_last_connection_returned_is_the_next_handed_out(db_url: str) -> None:
    with LifoConnectionPool(db_url, min_size=3, max_size=3, kwargs={"autocommit": True}) as pool:
        pool.wait(timeout=30)
        conns = [pool.getconn() for _ in range(3)]
        pids = [c.info.backend_pid for c in conns]
        assert len(set(pids)) == 3
        for conn in conns:  # returned oldest first: first in, first out would give it back
            pool.putconn(conn)
        again = [pool.getconn() for _ in range(3)]
        assert [c.info.backend_pid for c in again] == pids[::-1]
        last = again[-1].info.backend_pid
        for conn in again:
            pool.putconn(conn)
        # One caller at a time keeps meeting the backend returned last.
        seen = set()
        for _ in range(5):
            with pool.connection() as conn:
                seen.add(conn.info.backend_pid)
        assert seen == {last}


def test_an_exhausted_pool_still_waits_and_times_out(db_url: str) -> None:
    with LifoConnectionPool(db_url, min_size=1, max_size=1) as pool:
        held = pool.getconn(timeout=30)
        try:
            with pytest.raises(psycopg_pool.PoolTimeout):
                pool.getconn(timeout=0.2)
        finally:
            pool.putconn(held)
        pool.putconn(pool.getconn(timeout=30))  # and serves again once one is back


def test_the_service_pools_last_in_first_out(db_url: str) -> None:
    with CouponService.connect(db_url, ServiceConfig(pool_min=1, pool_max=2)) as svc:
        assert isinstance(svc.pool, LifoConnectionPool)
