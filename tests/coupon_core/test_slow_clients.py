"""Slow clients against a real server: request deadlines, the connection bound, the drain.

Each probe (experiments.faults.slow_clients) is a raw socket against a real uvicorn
server on loopback over the real database. Before coupon_core.connections every probe
here ended ``open``: the server held the connection past any bound.
"""

from __future__ import annotations

import http.client
import json
import socket
import threading
import time
from collections.abc import Iterator

import psycopg
import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.server import Limits, RunningServer, serve_in_thread
from experiments.faults.slow_clients import ProbeResult, SlowCrowd, claim_request, run_probe

# Servers held open by slow clients, seconds each: out of `make unit`, in `make test`.
pytestmark = pytest.mark.slow

TIMEOUT_S = 2.0  # the server's request timeout here (10 s by default)
# Each probe must end by then; the server's bound plus scheduling on a busy machine.
FREED_BOUND_S = TIMEOUT_S + 6.0
PROBE_BOUND_S = 30.0  # the probes' own patience, well past the server's bound


@pytest.fixture
def service(db_url: str) -> Iterator[CouponService]:
    with CouponService.connect(db_url, ServiceConfig(strategy="row_lock", pool_max=4)) as svc:
        yield svc


@pytest.fixture
def server(service: CouponService) -> Iterator[RunningServer]:
    with serve_in_thread(service, limits=Limits(request_timeout_s=TIMEOUT_S)) as s:
        yield s


def claims(db_url: str, coupon: str) -> int:
    with psycopg.connect(db_url) as conn:
        row = conn.execute("SELECT count(*) FROM claims WHERE coupon_name = %s", (coupon,))
        return int(row.fetchone()[0])  # type: ignore[index]


def assert_timed_out(r: ProbeResult) -> None:
    assert (r.ending, r.status, r.content_type) == ("status", 408, "application/json"), r
    assert json.loads(r.body) == {"error": "request timeout"}
    # Not before the deadline (the bound is a bound, not a guess), and soon after it.
    assert TIMEOUT_S - 0.1 <= r.seconds < FREED_BOUND_S, r


def test_slow_body_gets_a_408_and_writes_nothing(
    server: RunningServer, service: CouponService, db_url: str, unique: str
) -> None:
    service.create(unique, 10)
    r = run_probe(
        "slow_body", server.host, server.port, bound_s=PROBE_BOUND_S, coupon=unique, user="u"
    )
    assert r.bytes_sent > 8
    assert_timed_out(r)
    assert claims(db_url, unique) == 0


def test_slow_headers_get_a_408(server: RunningServer, db_url: str, unique: str) -> None:
    r = run_probe(
        "slow_headers",
        server.host,
        server.port,
        bound_s=PROBE_BOUND_S,
        coupon=unique,
        head_interval_s=0.2,
    )
    head, _ = claim_request(server.host, server.port, unique, "slow-probe")
    assert 1 <= r.bytes_sent < len(head)  # cut off mid-head
    assert_timed_out(r)


def test_idle_connection_is_closed_without_an_answer(server: RunningServer) -> None:
    r = run_probe("idle", server.host, server.port, bound_s=PROBE_BOUND_S)
    assert (r.ending, r.status, r.bytes_sent) == ("closed", None, 0), r
    assert TIMEOUT_S - 0.1 <= r.seconds < FREED_BOUND_S


def test_cut_body_is_closed_and_writes_nothing(
    server: RunningServer, service: CouponService, db_url: str, unique: str
) -> None:
    service.create(unique, 10)
    r = run_probe(
        "cut_body", server.host, server.port, bound_s=PROBE_BOUND_S, coupon=unique, user="u"
    )
    # Nobody is left to answer: the server closes at once (no 5xx, no 400).
    assert r.ending in ("closed", "reset"), r
    assert r.seconds < FREED_BOUND_S
    assert claims(db_url, unique) == 0


def test_a_slow_service_call_is_not_cut_by_the_deadline(
    server: RunningServer, service: CouponService, db_url: str, unique: str
) -> None:
    # The deadline is for the request's arrival; a claim waiting on a row lock longer
    # than the request timeout is the pool timeout's to bound, and succeeds.
    service.create(unique, 10)
    head, body = claim_request(server.host, server.port, unique, "u")
    with psycopg.connect(db_url) as locker:
        locker.execute("SELECT 1 FROM coupons WHERE name = %s FOR UPDATE", (unique,))
        conn = http.client.HTTPConnection(server.host, server.port, timeout=30)
        conn.sock = socket.create_connection((server.host, server.port), timeout=30)
        conn.sock.sendall(head + body)
        time.sleep(TIMEOUT_S + 1.0)
        locker.rollback()
        response = http.client.HTTPResponse(conn.sock)
        response.begin()
        assert response.status == 200
        conn.close()
    assert claims(db_url, unique) == 1


def test_a_kept_alive_connections_next_request_has_its_deadline(server: RunningServer) -> None:
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 "), first
        started = time.monotonic()
        sock.sendall(b"GET /health HTTP/1.1\r\nHo")  # and no more
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
        elapsed = time.monotonic() - started
    assert answer.startswith(b"HTTP/1.1 408 "), answer
    assert TIMEOUT_S - 0.1 <= elapsed < FREED_BOUND_S


def test_connections_past_the_bound_get_503(service: CouponService) -> None:
    limits = Limits(request_timeout_s=30.0, max_connections=5)
    with serve_in_thread(service, limits=limits) as server:
        held = [socket.create_connection((server.host, server.port), timeout=10) for _ in range(5)]
        try:
            time.sleep(0.5)  # the server has made their connections (accept is async)
            with socket.create_connection((server.host, server.port), timeout=10) as extra:
                extra.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
                answer = b""
                while chunk := extra.recv(65536):  # and then closed
                    answer += chunk
            head, _, body = answer.partition(b"\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 503 "), answer
            assert b"content-type: application/json" in head
            assert b"connection: close" in head
            assert json.loads(body) == {"error": "service unavailable"}
        finally:
            for s in held:
                s.close()
        # Freed: a new connection is served again.
        deadline = time.monotonic() + 10
        while True:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
            conn.request("GET", "/health")
            status = conn.getresponse().status
            conn.close()
            if status == 200:
                break
            assert time.monotonic() < deadline, "the bound did not free up"
            time.sleep(0.1)


def test_normal_clients_are_served_beside_a_slow_crowd(
    server: RunningServer, service: CouponService, unique: str
) -> None:
    service.create(unique, 1000)
    with SlowCrowd(server.host, server.port, 100, interval_s=0.5) as crowd:
        deadline = time.monotonic() + 10
        while crowd.open_now < 100 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert crowd.open_now == 100
        conn = http.client.HTTPConnection(server.host, server.port, timeout=10)
        slowest = 0.0
        for i in range(50):
            started = time.monotonic()
            body = json.dumps({"user_id": f"u{i}", "coupon_name": unique})
            conn.request("POST", "/api/coupons/claim", body, {"Content-Type": "application/json"})
            assert conn.getresponse().read() == b""
            slowest = max(slowest, time.monotonic() - started)
        conn.close()
        time.sleep(TIMEOUT_S + 2.0)
        freed = crowd.freed
    assert slowest < 2.0, f"a claim took {slowest:.2f}s beside the crowd"
    assert freed >= 100, f"the server freed {freed} of the crowd's connections"  # each 408ed


def test_shutdown_answers_a_request_sent_on_an_idle_kept_alive_connection(
    service: CouponService,
) -> None:
    # uvicorn's own shutdown closed idle kept-alive connections at once: a request the
    # client sent on one just then was lost (a reset: an unknown op).
    server = serve_in_thread(service)
    with socket.create_connection((server.host, server.port), timeout=30) as sock:
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")
        stopper = threading.Thread(target=server.stop, daemon=True)
        stopper.start()
        time.sleep(0.3)  # shutdown has begun: the listener is closed
        sock.sendall(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while chunk := sock.recv(65536):  # a reset here raises: the request was lost
            answer += chunk
    stopper.join(30)
    assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert b"connection: close" in answer.lower()
    assert not server.running
