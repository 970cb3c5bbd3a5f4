"""Backend kills on a real database: the killed pid is gone, a paused claim leaves no trace."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.errors import Unavailable
from experiments.faults import BackendKiller, ClaimPause, backend_pids, terminate_backends


def _state(url: str, coupon: str) -> tuple[int, int]:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT remaining_amount, (SELECT count(*) FROM claims WHERE coupon_name = %s)"
            " FROM coupons WHERE name = %s",
            (coupon, coupon),
        ).fetchone()
    assert row is not None
    return int(str(row[0])), int(str(row[1]))


def test_terminate_removes_the_service_backends(db_url: str, unique: str) -> None:
    app = f"svc-{unique}"
    with CouponService.connect(db_url, ServiceConfig(pool_min=3, application_name=app)) as svc:
        svc.pool.wait(timeout=10)
        before = backend_pids(db_url, app)
        assert len(before) >= 3
        killed = terminate_backends(db_url, app)
        assert sorted(killed) == before
        # pg_terminate_backend(pid, timeout) waited for each to exit: none of them is left.
        assert not set(before) & set(backend_pids(db_url, app))
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
        assert _state(db_url, f"{unique}-c") == (2, 1)


def test_kill_while_a_claim_holds_the_row_lock_leaves_no_partial_claim(
    db_url: str, unique: str
) -> None:
    app = f"svc-{unique}"
    coupon = f"{unique}-c"
    pause = ClaimPause(max_pause_s=5)
    with CouponService.connect(db_url, ServiceConfig(pool_min=1, application_name=app)) as svc:
        svc.create(coupon, 5)
        svc.fault = pause
        errors: list[BaseException] = []

        def claim() -> None:
            try:
                svc.claim("victim", coupon)
            except BaseException as err:
                errors.append(err)

        t = threading.Thread(target=claim)
        t.start()
        assert pause.wait_paused(5), "the claim never reached after_insert"
        idle_in_tx = backend_pids(db_url, app, state="idle in transaction")
        assert len(idle_in_tx) == 1  # the paused claim: inserted, lock held, not committed
        killed = terminate_backends(db_url, app, state="idle in transaction")
        assert killed == idle_in_tx
        pause.release()
        t.join(10)
        assert not t.is_alive()
        assert len(errors) == 1
        assert isinstance(errors[0], Unavailable)
        # The insert died with its transaction: stock untouched, no claim row.
        assert _state(db_url, coupon) == (5, 0)


def test_killer_is_bounded_and_records_windows(db_url: str, unique: str) -> None:
    app = f"svc-{unique}"
    with CouponService.connect(db_url, ServiceConfig(pool_min=2, application_name=app)) as svc:
        svc.pool.wait(timeout=10)
        start = time.monotonic()
        with BackendKiller(db_url, app, interval_s=0.05, jitter_s=0.02, max_kills=3, seed=7) as k:
            while k.rounds < 3 and time.monotonic() - start < 5:
                svc.health()
                time.sleep(0.01)
        assert k.rounds == 3
        assert len(k.windows.windows) == 3
        assert k.killed, "three rounds against a live pool killed nothing"
        assert time.monotonic() - start < 5


@pytest.mark.parametrize("strategy", ["advisory", "serializable", "row_lock_pipelined"])
def test_pause_kill_on_other_strategies(db_url: str, unique: str, strategy: str) -> None:
    app = f"svc-{unique}"
    coupon = f"{unique}-c"
    pause = ClaimPause(max_pause_s=5)
    with CouponService.connect(
        db_url, ServiceConfig(strategy=strategy, pool_min=1, application_name=app)
    ) as svc:
        svc.create(coupon, 2)
        svc.fault = pause
        out: list[BaseException | None] = []

        def claim() -> None:
            try:
                svc.claim("victim", coupon)
                out.append(None)
            except BaseException as err:
                out.append(err)

        t = threading.Thread(target=claim)
        t.start()
        assert pause.wait_paused(5)
        assert terminate_backends(db_url, app, state="idle in transaction")
        pause.release()
        t.join(10)
        assert isinstance(out[0], Unavailable)
        assert _state(db_url, coupon) == (2, 0)


def test_a_round_waits_for_a_backend_to_kill(db_url: str, unique: str) -> None:
    """The service's pool is empty when the round comes (the last round emptied it, and
    it has not reconnected yet); a connection opens 0.3 s later. Old code: the round
    killed nothing (rounds of [4, 0, 6, 5] over HTTP, seen in the sweep) and
    connection_drop's backends_killed failed; the round now waits for a backend."""
    app = f"svc-{unique}"
    opened: list[psycopg.Connection[tuple[object, ...]]] = []

    def late() -> None:
        time.sleep(0.35)
        opened.append(psycopg.connect(db_url, autocommit=True, application_name=app))

    t = threading.Thread(target=late)
    t.start()
    try:
        with BackendKiller(db_url, app, interval_s=0.05, jitter_s=0.0, max_kills=1) as k:
            k.done.wait(5)
        assert k.killed_per_round == [1], k.killed_per_round
    finally:
        t.join()
        for conn in opened:
            conn.close()


def test_a_round_with_no_backend_in_its_bound_kills_nothing(db_url: str, unique: str) -> None:
    """A service that never reconnects still shows: the round kills 0, within its bound."""
    start = time.monotonic()
    with BackendKiller(
        db_url, f"svc-{unique}", interval_s=0.01, jitter_s=0.0, max_kills=1, backend_wait_s=0.3
    ) as k:
        k.done.wait(5)
    assert k.killed_per_round == [0]
    assert time.monotonic() - start < 3
