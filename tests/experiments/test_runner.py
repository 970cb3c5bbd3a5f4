"""The runner on the real database: barrier release, run bound, no thread left behind."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import psycopg
import pytest

from experiments.lab import open_lab
from experiments.plans import Plan, PlannedOp, stampede_plan
from experiments.runner import NOT_STARTED, RunnerError, run_plan


def _workers_alive() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("worker-")]


@contextmanager
def row_locked(url: str, coupon: str) -> Iterator[None]:
    """Hold the coupon's row lock from another session, as a slow transaction would."""
    with psycopg.connect(url) as conn:
        conn.execute("SELECT 1 FROM coupons WHERE name = %s FOR UPDATE", (coupon,))
        try:
            yield
        finally:
            conn.rollback()


@pytest.mark.parametrize("release_by", ["gate", "barrier"])
def test_barrier_releases_every_worker_together(
    db_url: str, unique: str, release_by: Literal["gate", "barrier"]
) -> None:
    with open_lab(database_url=db_url, workers=50, prefix=unique) as lab:
        plan = stampede_plan(1, unique, stock=50, users=50)
        lab.setup(plan)
        report = run_plan(plan, lab.client, lab.history, run_timeout_s=30, release_by=release_by)
        state = lab.state()
    assert report.ops_run == 50
    assert report.not_started == 0
    assert not report.timed_out
    assert len(report.first_invoke_ns) == 50
    # Nobody invoked before the barrier let them go, and the barrier waited for the last.
    assert report.released_ns >= report.last_started_ns
    assert min(report.first_invoke_ns.values()) >= report.released_ns
    spread = (max(report.first_invoke_ns.values()) - min(report.first_invoke_ns.values())) / 1e6
    assert report.start_spread_ms == pytest.approx(spread)
    assert report.start_spread_ms is not None
    assert report.start_spread_ms < 2000
    assert lab.history.counts()["claim"] == {"ok": 50}
    assert state.claim_rows() == 50
    assert _workers_alive() == []


@pytest.mark.slow
def test_run_bound_stops_new_ops_and_records_them_unknown(db_url: str, unique: str) -> None:
    coupon = f"{unique}-locked"
    ops = tuple(
        PlannedOp(i, i % 2, "claim", coupon, user=f"u{i}") for i in range(10)
    )  # two workers, five claims each
    plan = Plan(seed=0, prefix=unique, workers=2, ops=ops, setup=((coupon, 100),))
    with open_lab(database_url=db_url, workers=2, op_timeout_s=1.0, prefix=unique) as lab:
        lab.setup(plan)
        t0 = time.monotonic()
        with row_locked(db_url, coupon):
            report = lab.run(plan, run_timeout_s=1.5)
        elapsed = time.monotonic() - t0
    # Each claim waits for the lock until the 1 s statement timeout: two per worker
    # start before the 1.5 s bound, the other three of each never do.
    assert report.timed_out
    assert report.ops_run == 4
    assert report.not_started == 6
    assert elapsed < 6
    claims = lab.history.of_kind("claim")
    assert len(claims) == 10
    skipped = [o for o in claims if o.message == NOT_STARTED]
    assert len(skipped) == 6
    assert all(o.result == "unknown" for o in skipped)
    ran = [o for o in claims if o.message != NOT_STARTED]
    assert all(o.result == "unavailable" for o in ran)
    assert all(o.latency_ns >= 0.9e9 for o in ran)
    assert _workers_alive() == []


@pytest.mark.slow
def test_a_worker_stuck_past_its_bound_is_an_error_not_a_hang(db_url: str, unique: str) -> None:
    coupon = f"{unique}-stuck"
    plan = Plan(
        seed=0,
        prefix=unique,
        workers=1,
        ops=(PlannedOp(0, 0, "claim", coupon, user="u"),),
        setup=((coupon, 1),),
    )
    # The service's own bound (statement timeout) is 30 s; the runner is told 0.2 s.
    with open_lab(database_url=db_url, workers=1, op_timeout_s=30.0, prefix=unique) as lab:
        lab.setup(plan)
        t0 = time.monotonic()
        with row_locked(db_url, coupon), pytest.raises(RunnerError, match="still running"):
            run_plan(plan, lab.client, lab.history, run_timeout_s=0.3, op_timeout_s=0.2)
        assert time.monotonic() - t0 < 10
        # The lock is gone: the stuck worker finishes and leaves.
        deadline = time.monotonic() + 10
        while _workers_alive() and time.monotonic() < deadline:
            time.sleep(0.05)
    assert _workers_alive() == []


def test_stop_event_ends_the_run_early(db_url: str, unique: str) -> None:
    coupon = f"{unique}-stop"
    ops = tuple(PlannedOp(i, 0, "get", coupon) for i in range(100_000))
    plan = Plan(seed=0, prefix=unique, workers=1, ops=ops, setup=((coupon, 1),))
    stop = threading.Event()
    with open_lab(database_url=db_url, workers=1, prefix=unique) as lab:
        lab.setup(plan)
        timer = threading.Timer(0.1, stop.set)
        timer.start()
        try:
            report = run_plan(plan, lab.client, lab.history, stop=stop, run_timeout_s=30)
        finally:
            timer.cancel()
            timer.join()
    assert 0 < report.ops_run < 100_000
    assert report.not_started == 100_000 - report.ops_run
    # The caller ended it, not the run bound: the report says which.
    assert report.stopped
    assert not report.timed_out


@pytest.mark.slow
def test_a_worker_that_never_arrives_breaks_the_gate_and_nothing_runs(
    db_url: str, unique: str
) -> None:
    with open_lab(database_url=db_url, workers=3, prefix=unique) as lab:
        plan = stampede_plan(1, unique, stock=3, users=3)
        lab.setup(plan)
        inner = lab.client
        slow = threading.Event()

        class Late:
            layer = inner.layer

            def ready(self, ops: list[object]) -> None:
                if threading.current_thread().name == "worker-0":
                    slow.wait(2.0)  # arrives after the gate gave up

            def invoke(self, op: object, history: object = None) -> object:
                return inner.invoke(op, history)  # type: ignore[arg-type]

            def close(self) -> None: ...

        with pytest.raises(RunnerError, match="never released"):
            run_plan(plan, Late(), lab.history, barrier_timeout_s=0.5, run_timeout_s=5)  # type: ignore[arg-type]
        claims = [o for o in lab.history.ops if o.kind == "claim"]
    assert claims == []
    assert _workers_alive() == []
