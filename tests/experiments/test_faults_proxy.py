"""The TCP proxy on a real database: it delays, throttles, stalls and resets for real.

The proxy is the ``proxy`` fixture (tests/fix_proxy.py): started before each test,
stopped after it, no thread of it left.
"""

from __future__ import annotations

import socket
import statistics
import threading
import time

import psycopg
import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.errors import Unavailable
from experiments.faults import TcpProxy
from tests.fix_proxy import running_proxy


def _round_trip_ms(conn: psycopg.Connection[tuple[object, ...]], n: int = 8) -> float:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        conn.execute("SELECT 1").fetchone()
        times.append((time.perf_counter() - t0) * 1000)
    return statistics.median(times)


def test_pass_through_then_latency_is_measured(proxy: TcpProxy, db_url: str) -> None:
    with psycopg.connect(proxy.conninfo(db_url), autocommit=True) as conn:
        base = _round_trip_ms(conn)
        proxy.set_phase("latency", latency_s=0.05, jitter_s=0.01)
        slow = _round_trip_ms(conn)
        proxy.set_phase("pass")
        again = _round_trip_ms(conn)
    assert base < 20
    assert 40 <= slow - base <= 120, (base, slow)
    assert again < 20
    (window,) = proxy.windows.windows
    assert window.phase == "latency"
    assert window.duration_s > 0.3


def test_throttle_limits_bytes_per_second(proxy: TcpProxy, db_url: str) -> None:
    with psycopg.connect(proxy.conninfo(db_url), autocommit=True) as conn:
        proxy.set_phase("throttle", bytes_per_s=100_000)
        t0 = time.monotonic()
        row = conn.execute("SELECT repeat('x', 50000)").fetchone()
        took = time.monotonic() - t0
        proxy.set_phase("pass")
    assert row is not None
    assert len(str(row[0])) == 50_000
    # 50 kB at 100 kB/s: about half a second, never the few ms of loopback.
    assert 0.35 <= took <= 2.0, took


def test_throttle_holds_even_one_small_round_trip(proxy: TcpProxy, db_url: str) -> None:
    """network_faults' throttle_applied judges one-statement claims: each of its
    messages is held a slice's time (20 ms at 20 kB/s), up and down. Old code slept
    after the slice: on a quiet connection a round trip went through at once."""
    with psycopg.connect(proxy.conninfo(db_url), autocommit=True) as conn:
        conn.execute("SELECT 1")
        time.sleep(0.1)  # a quiet connection: nothing queued behind an earlier slice
        proxy.set_phase("throttle", bytes_per_s=20_000)
        t0 = time.monotonic()
        conn.execute("SELECT 1")
        took = time.monotonic() - t0
        proxy.set_phase("pass")
    assert took >= 0.038, took


def test_reset_breaks_live_connections_and_refuses_new_ones(proxy: TcpProxy, db_url: str) -> None:
    url = proxy.conninfo(db_url)
    conn = psycopg.connect(url, autocommit=True)
    try:
        conn.execute("SELECT 1")
        proxy.set_phase("reset")
        with pytest.raises(psycopg.OperationalError):
            conn.execute("SELECT 1")
        assert conn.closed
        with pytest.raises(psycopg.OperationalError):
            psycopg.connect(url, connect_timeout=2)
    finally:
        conn.close()
    assert proxy.resets >= 1
    assert proxy.refused >= 1
    proxy.set_phase("pass")
    with psycopg.connect(url, autocommit=True) as fresh:
        assert fresh.execute("SELECT 41 + 1").fetchone() == (42,)


def test_stall_holds_the_answer_until_the_phase_ends(proxy: TcpProxy, db_url: str) -> None:
    with psycopg.connect(proxy.conninfo(db_url), autocommit=True) as conn:
        proxy.set_phase("stall")
        timer = threading.Timer(0.5, proxy.set_phase, args=("pass",))
        timer.start()
        t0 = time.monotonic()
        assert conn.execute("SELECT 7").fetchone() == (7,)
        took = time.monotonic() - t0
        timer.join()
    assert 0.45 <= took <= 2.0, took


def test_service_through_the_proxy_sees_reset_as_unavailable_and_recovers(
    proxy: TcpProxy, db_url: str, unique: str
) -> None:
    coupon = f"{unique}-c"
    cfg = ServiceConfig(pool_min=2, pool_timeout=2.0, application_name=f"svc-{unique}")
    with CouponService.connect(proxy.conninfo(db_url), cfg) as svc:
        svc.create(coupon, 10)
        svc.claim("u0", coupon)
        proxy.set_phase("reset")
        with pytest.raises(Unavailable):
            svc.claim("u1", coupon)
        proxy.set_phase("pass")
        deadline = time.monotonic() + 15
        while True:
            try:
                svc.claim("u1", coupon)
                break
            except Unavailable:
                assert time.monotonic() < deadline, "no recovery after the reset ended"
                time.sleep(0.05)
        assert svc.get(coupon).claimed_by == ["u0", "u1"]


def test_seeded_jitter_replays() -> None:
    def delays(seed: int) -> list[float]:
        p = TcpProxy("127.0.0.1", 1, seed=seed)
        p.phase, p.latency_s, p.jitter_s = "latency", 0.05, 0.02
        return [p._delay() for _ in range(20)]

    assert delays(5) == delays(5)
    assert delays(5) != delays(6)
    assert all(0.03 <= d <= 0.07 for d in delays(5))


def test_unknown_phase_and_unix_socket_are_refused(db_url: str) -> None:
    p = TcpProxy("127.0.0.1", 1)
    with pytest.raises(ValueError, match="unknown proxy phase"):
        p.set_phase("explode")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="TCP database address"):
        TcpProxy.for_url("postgresql://postgres@/postgres?host=/tmp")


@pytest.mark.slow
def test_the_fixture_fails_a_pump_that_outlives_stop(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planted pump that ignores stop(): the proxy fixture fails the test. The old
    fixture looked at ``p.threads`` after stop(), which has forgotten its connections
    by then, so it passed with both pumps of a connection still running."""
    release = threading.Event()
    monkeypatch.setattr(TcpProxy, "_pump", lambda self, link, src, dst, up: release.wait(30))
    sock: socket.socket | None = None
    try:
        with (  # noqa: PT012
            pytest.raises(AssertionError, match="proxy threads outlived stop"),
            running_proxy(db_url) as p,
        ):
            sock = socket.create_connection(("127.0.0.1", p.port), timeout=5)
            deadline = time.monotonic() + 5
            while p.accepted == 0:
                assert time.monotonic() < deadline, "the proxy never accepted"
                time.sleep(0.01)
        assert all(not t.is_alive() for t in p.threads)  # the old fixture's check
    finally:
        release.set()
        if sock is not None:
            sock.close()
