"""The server runner: sockets that asyncio will mark TCP_NODELAY; groups of worker processes."""

from __future__ import annotations

import asyncio.base_events
import os
import signal
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx
import psycopg
import pytest

from coupon_core.database import free_port
from coupon_core.errors import Unavailable
from coupon_core.server import ServerError, bind_socket
from coupon_core.workers import ServerGroup, serve_processes

T = TypeVar("T")


def test_accepted_sockets_get_tcp_nodelay() -> None:
    # asyncio sets TCP_NODELAY on an accepted socket only when its proto says TCP,
    # and accepted sockets copy the listener's proto. With proto 0 every JSON
    # response waited 40 ms for a delayed ACK on keep-alive connections.
    listener = bind_socket("127.0.0.1", 0)
    try:
        listener.listen(1)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            accepted, _ = listener.accept()
            with accepted:
                asyncio.base_events._set_nodelay(accepted)  # what the event loop does
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        listener.close()


def _api_threads() -> set[threading.Thread]:
    # Identities, not a count: another module's servers may still be ending their
    # threads when a test starts (seen: 102 of them), and a count would mix the two.
    return {t for t in threading.enumerate() if t.name.startswith("coupon-api")}


def test_request_threads_end_with_their_server(db_url: str, unique: str) -> None:
    # The lab starts and stops servers by the dozen: each server's request threads
    # must go with it, not pile up in the process.
    from coupon_core import CouponService, ServiceConfig
    from coupon_core.server import serve_in_thread

    before = _api_threads()
    with CouponService.connect(db_url, ServiceConfig(strategy="atomic", pool_max=4)) as svc:
        for round_ in range(3):
            with serve_in_thread(svc, port=0) as server, httpx.Client() as client:
                name = f"{unique}-{round_}"
                created = client.post(f"{server.url}/api/coupons", json={"name": name, "amount": 8})
                assert created.status_code == 201
                for i in range(8):
                    body = {"user_id": f"u{i}", "coupon_name": name}
                    claimed = client.post(f"{server.url}/api/coupons/claim", json=body)
                    assert claimed.status_code == 200
                assert _api_threads() - before
            deadline = time.monotonic() + 5
            while _api_threads() - before and time.monotonic() < deadline:
                time.sleep(0.01)
            left = _api_threads() - before
            assert not left, f"round {round_}: request threads left behind: {len(left)}"


def test_reuse_port_lets_listeners_share_a_port() -> None:
    first = bind_socket("127.0.0.1", 0, reuse_port=True)
    port = first.getsockname()[1]
    try:
        first.listen(1)
        with bind_socket("127.0.0.1", port, reuse_port=True) as second:
            second.listen(1)
        # A socket without SO_REUSEPORT may not join: the port is not silently shared.
        with pytest.raises(ServerError, match="cannot listen"):
            bind_socket("127.0.0.1", port)
    finally:
        first.close()


# -- worker process groups (coupon_core.workers) ---------------------------------------

POOL = 3  # connections per worker


def workers_of(parent: int) -> list[int]:
    """Pids of live worker processes that ``parent`` started, found in /proc."""
    mark = f"\0--parent-pid\0{parent}\0".encode()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes() if proc.name.isdigit() else b""
        except OSError:  # gone meanwhile
            continue
        if b"\0coupon_core.workers\0" in argv and mark in argv:
            found.append(int(proc.name))
    return found


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def backends(db_url: str, pid: int) -> tuple[int, int]:
    """A worker's backends: how many, and how many have run a statement."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE query <> '') FROM pg_stat_activity"
            " WHERE application_name = %s",
            (f"coupon-service-{pid}",),
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def in_threads(n: int, work: Callable[[int, threading.Barrier], T]) -> list[T]:
    """Run ``work(i)`` for i in range(n) in n threads at once; every wait is bounded."""
    barrier = threading.Barrier(n, timeout=30)
    results: dict[int, T] = {}
    lock = threading.Lock()

    def run(i: int) -> None:
        result = work(i, barrier)
        with lock:
            results[i] = result

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == n, "a client thread failed or hung"
    return [results[i] for i in range(n)]


@pytest.fixture
def group(db_url: str) -> Iterator[ServerGroup]:
    with serve_processes(db_url, processes=2, pool_size=POOL) as g:
        yield g


def test_group_serves_from_both_workers(group: ServerGroup, db_url: str, unique: str) -> None:
    assert len(group.pids) == 2
    assert all(alive(pid) for pid in group.pids)
    assert sorted(workers_of(os.getpid())) == sorted(group.pids)
    # Each pool is exactly POOL connections, open before the worker said ready, and
    # none has run a statement yet.
    assert [backends(db_url, pid) for pid in group.pids] == [(POOL, 0), (POOL, 0)]

    def client(i: int, barrier: threading.Barrier) -> tuple[int, int, dict[str, object]]:
        name = f"{unique}-{i}"
        with httpx.Client(base_url=group.url, timeout=30) as c:
            c.get("/health")  # connect first: 16 connections open at once
            barrier.wait()
            created = c.post("/api/coupons", json={"name": name, "amount": 1}).status_code
            claim = {"user_id": f"u{i}", "coupon_name": name}
            claimed = c.post("/api/coupons/claim", json=claim).status_code
            return created, claimed, c.get(f"/api/coupons/{name}").json()

    for i, answer in enumerate(in_threads(16, client)):
        name = f"{unique}-{i}"
        view = {"name": name, "amount": 1, "remaining_amount": 0, "claimed_by": [f"u{i}"]}
        assert answer == (201, 200, view)
    # The kernel hashed the 16 connections over both listeners (all on one: p = 2**-15),
    # so both workers' pools have run statements since.
    assert all(backends(db_url, pid)[1] >= 1 for pid in group.pids)


def test_group_conserves_stock_in_a_stampede(group: ServerGroup, db_url: str, unique: str) -> None:
    name = f"{unique}-stampede"
    assert (
        httpx.post(f"{group.url}/api/coupons", json={"name": name, "amount": 5}).status_code == 201
    )

    def claim(i: int, barrier: threading.Barrier) -> tuple[int, bytes]:
        with httpx.Client(base_url=group.url, timeout=30) as c:
            c.get("/health")  # connect first, so the barrier releases claims, not handshakes
            barrier.wait()
            r = c.post("/api/coupons/claim", json={"user_id": f"u{i}", "coupon_name": name})
            return r.status_code, r.content

    answers = Counter(in_threads(40, claim))
    assert answers == Counter({(200, b""): 5, (400, b'{"error":"coupon out of stock"}'): 35})
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM claims WHERE coupon_name = %s),"
            " (SELECT remaining_amount FROM coupons WHERE name = %s)",
            (name, name),
        ).fetchone()
    assert row == (5, 0)


def test_stop_is_bounded_and_idempotent(db_url: str) -> None:
    g = serve_processes(db_url, processes=2, pool_size=1)
    stuck, fine = g.pids
    os.kill(stuck, signal.SIGSTOP)  # cannot act on SIGTERM: only SIGKILL ends it
    started = time.monotonic()
    g.stop(timeout=1.0)
    assert time.monotonic() - started < 5.0
    assert g.exit_codes == {stuck: -signal.SIGKILL, fine: 0}
    assert not g.running
    assert not any(alive(pid) for pid in g.pids)
    g.stop()  # again: nothing to do
    assert g.exit_codes == {stuck: -signal.SIGKILL, fine: 0}
    with pytest.raises(ConnectionRefusedError), socket.create_connection((g.host, g.port), 2):
        pass


def test_group_refuses_a_port_a_server_listens_on(db_url: str) -> None:
    # Without the check a second group would join the first's SO_REUSEPORT port.
    with serve_processes(db_url, processes=1, pool_size=1) as first:
        before = workers_of(os.getpid())
        with pytest.raises(ServerError, match="a server is listening there"):
            serve_processes(db_url, processes=1, pool_size=1, port=first.port)
        assert workers_of(os.getpid()) == before
        assert first.running


def test_worker_that_cannot_reach_the_database_fails_the_start() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    before = workers_of(os.getpid())
    started = time.monotonic()
    # apply_schema=False, or the parent would fail first (next test).
    with pytest.raises(ServerError, match=r"worker \d+ exited with code 1: worker \d+: .*refused"):
        serve_processes(url, processes=2, pool_size=1, startup_timeout=20, apply_schema=False)
    assert time.monotonic() - started < 20
    assert workers_of(os.getpid()) == before


def test_unreachable_database_fails_before_any_worker_starts() -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/postgres"
    before = workers_of(os.getpid())
    with pytest.raises(Unavailable):
        serve_processes(url, processes=2)
    assert workers_of(os.getpid()) == before
