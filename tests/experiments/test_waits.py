"""The lock-wait sampler against a real lock: a backend it must see waiting, and one it must not."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from experiments.waits import LockWaitSampler

BOUND_S = 30.0


def _wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + BOUND_S
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"{what} not seen within {BOUND_S} s"
        time.sleep(0.01)


@pytest.mark.chaos
def test_a_backend_waiting_on_a_row_lock_is_sampled(db_url: str, unique: str) -> None:
    coupon = f"{unique}-c"
    with psycopg.connect(db_url, autocommit=True) as setup:
        setup.execute(
            "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, 1, 1)", (coupon,)
        )
    holder = psycopg.connect(db_url, application_name=f"holder-{unique}")
    waiter = psycopg.connect(db_url, autocommit=True, application_name=f"coupon-{unique}-w")
    other = psycopg.connect(db_url, autocommit=True, application_name=f"other-{unique}")
    try:
        holder.execute("SELECT 1 FROM coupons WHERE name = %s FOR UPDATE", (coupon,))
        done = threading.Event()

        def wait_on_lock(conn: psycopg.Connection[object]) -> None:
            conn.execute("SET lock_timeout = '60s'")
            conn.execute("SELECT 1 FROM coupons WHERE name = %s FOR UPDATE", (coupon,))
            done.set()

        threads = [
            threading.Thread(target=wait_on_lock, args=(c,), daemon=True) for c in (waiter, other)
        ]
        with LockWaitSampler(db_url, f"coupon-{unique}-", interval_s=0.01) as sampler:
            for t in threads:
                t.start()
            # Held until the sampler saw the waiter: no race with the machine's speed.
            _wait_for(lambda: sampler.waits.peak >= 1, "the waiting backend")
            holder.rollback()
            for t in threads:
                t.join(BOUND_S)
        waits = sampler.waits
        assert waits.error is None
        # Only the backend whose application_name has the prefix is counted, not "other".
        assert waits.peak == 1
        assert waits.wait_s > 0
        assert waits.samples >= 1
        assert set(waits.by_event) <= {"transactionid", "tuple"}
        assert waits.interval_ms is not None
        assert waits.interval_ms > 0
    finally:
        for c in (holder, waiter, other):
            c.close()


@pytest.mark.chaos
def test_no_wait_is_zero_and_a_bad_url_is_an_error_not_a_crash(db_url: str, unique: str) -> None:
    with LockWaitSampler(db_url, f"coupon-{unique}-") as sampler:
        _wait_for(lambda: sampler.waits.samples >= 2, "two samples")
    assert sampler.waits.wait_s == 0
    assert sampler.waits.peak == 0
    with LockWaitSampler("postgresql://nobody@127.0.0.1:1/none?connect_timeout=1", "x") as bad:
        pass
    assert bad.waits.error is not None
    assert bad.waits.samples == 0
