"""Backend kills on a real database: the killed pid is gone, a paused claim leaves no trace.

The kills go through the ``backends`` fixture (tests/fix_backends.py): the test's
service names its connections ``backends.application_name``; the fixture stops its
killers and terminates what is left after the test.
"""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from coupon_core.errors import Unavailable
from tests.fix_backends import Backends
from tests.tables import stock_and_claims


def test_terminate_removes_the_service_backends(
    backends: Backends, db_url: str, unique: str
) -> None:
    with backends.connect(pool_min=3) as svc:
        svc.pool.wait(timeout=10)
        before = backends.pids()
        assert len(before) >= 3
        killed = backends.kill()
        assert sorted(killed) == before
        # pg_terminate_backend(pid, timeout) waited for each to exit: none of them is left.
        assert not set(before) & set(backends.pids())
        # The first calls may meet a dead pooled connection (Unavailable, nothing
        # written); the service then replaces them and serves again.
        failures = 0
        deadline = time.monotonic() + 10
        while True:
            try:
                svc.create(f"{unique}-c", 3)
                break
            except Unavailable:
                failures += 1
                assert time.monotonic() < deadline, "service did not recover after the kill"
                time.sleep(0.05)
        svc.claim("u1", f"{unique}-c")
        assert failures <= 3
        assert stock_and_claims(db_url, f"{unique}-c") == (2, 1)


def test_kill_while_a_claim_holds_the_row_lock_leaves_no_partial_claim(
    backends: Backends, db_url: str, unique: str
) -> None:
    coupon = f"{unique}-c"
    with backends.connect(pool_min=1) as svc:
        svc.create(coupon, 5)
        kill = backends.kill_mid_claim(svc, "victim", coupon)
        assert len(kill.paused) == 1  # the paused claim: inserted, lock held, not committed
        assert kill.killed == kill.paused
        assert isinstance(kill.error, Unavailable)
        # The insert died with its transaction: stock untouched, no claim row.
        assert stock_and_claims(db_url, coupon) == (5, 0)


def test_killer_is_bounded_and_records_windows(backends: Backends) -> None:
    with backends.connect(pool_min=2) as svc:
        svc.pool.wait(timeout=10)
        start = time.monotonic()
        with backends.killer(interval_s=0.05, jitter_s=0.02, max_kills=3, seed=7) as k:
            while k.rounds < 3 and time.monotonic() - start < 5:
                svc.health()
                time.sleep(0.01)
        assert k.rounds == 3
        assert len(k.windows.windows) == 3
        assert k.killed, "three rounds against a live pool killed nothing"
        assert time.monotonic() - start < 5


@pytest.mark.parametrize("strategy", ["advisory", "serializable", "row_lock_pipelined"])
def test_pause_kill_on_other_strategies(
    backends: Backends, db_url: str, unique: str, strategy: str
) -> None:
    coupon = f"{unique}-c"
    with backends.connect(strategy=strategy, pool_min=1) as svc:
        svc.create(coupon, 2)
        kill = backends.kill_mid_claim(svc, "victim", coupon)
        assert kill.killed
        assert isinstance(kill.error, Unavailable)
        assert stock_and_claims(db_url, coupon) == (2, 0)


def test_a_round_waits_for_a_backend_to_kill(backends: Backends, db_url: str) -> None:
    """The service's pool is empty when the round comes (the last round emptied it, and
    it has not reconnected yet); a connection opens 0.3 s later. Old code: the round
    killed nothing (rounds of [4, 0, 6, 5] over HTTP, seen in the sweep) and
    connection_drop's backends_killed failed; the round now waits for a backend."""
    opened: list[psycopg.Connection[tuple[object, ...]]] = []

    def late() -> None:
        time.sleep(0.35)
        opened.append(
            psycopg.connect(db_url, autocommit=True, application_name=backends.application_name)
        )

    t = threading.Thread(target=late)
    t.start()
    try:
        with backends.killer(interval_s=0.05, jitter_s=0.0, max_kills=1) as k:
            k.done.wait(5)
        assert k.killed_per_round == [1], k.killed_per_round
    finally:
        t.join()
        for conn in opened:
            conn.close()


def test_a_round_with_no_backend_in_its_bound_kills_nothing(backends: Backends) -> None:
    """A service that never reconnects still shows: the round kills 0, within its bound."""
    start = time.monotonic()
    with backends.killer(interval_s=0.01, jitter_s=0.0, max_kills=1, backend_wait_s=0.3) as k:
        k.done.wait(5)
    assert k.killed_per_round == [0]
    assert time.monotonic() - start < 3


def test_the_fixture_leaves_no_backend_of_its_name(backends: Backends, db_url: str) -> None:
    """What a failed test leaves open (a service never closed, a stray connection) is
    terminated when the fixture ends: the next test starts with none of that name."""
    svc = backends.connect(pool_min=2)
    svc.pool.wait(timeout=10)
    stray = psycopg.connect(db_url, autocommit=True, application_name=backends.application_name)
    try:
        assert len(backends.pids()) >= 3
        backends.close()
        assert backends.pids() == []
        with pytest.raises(psycopg.OperationalError):
            stray.execute("SELECT 1")
    finally:
        stray.close()


def test_a_mid_claim_kill_of_a_claim_that_never_paused_fails(
    backends: Backends, unique: str
) -> None:
    """A claim that ends before its insert (no such coupon) is never parked: the kill
    did not happen mid-claim, and the helper says so within its bound, not later."""
    with backends.connect(pool_min=1) as svc:
        start = time.monotonic()
        with pytest.raises(AssertionError, match="never reached after_insert"):
            backends.kill_mid_claim(svc, "victim", f"{unique}-none", bound_s=0.5)
        assert time.monotonic() - start < 3
        assert svc.fault is None  # the hook is taken off again
