"""A database outage under a running server: 503s within the pool timeout, then recovery.

The outage is the ``outage`` fixture's (tests/fix_restart.py): a cluster of the test's
own, stopped and started again by hand, so the session's database stays up.
"""

from __future__ import annotations

import logging
import os
import re
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from coupon_core import CouponService
from coupon_core.database import free_port
from coupon_core.errors import Unavailable
from coupon_core.server import serve_in_thread
from tests.fix_restart import Outage
from tests.procs import children, wait_serving

ROOT = Path(__file__).resolve().parents[2]

POOL_TIMEOUT_S = 2.0
# A request during the outage may wait the pool timeout, plus a health check's 2 s,
# plus scheduling on a busy 2-core machine; it must never hang beyond this.
REQUEST_BOUND_S = POOL_TIMEOUT_S + 4.0
RECOVERY_BOUND_S = 30.0

pytestmark = pytest.mark.slow


def timed(client: httpx.Client, method: str, url: str, **kwargs: object) -> httpx.Response:
    start = time.monotonic()
    r = client.request(method, url, **kwargs)  # type: ignore[arg-type]
    elapsed = time.monotonic() - start
    assert elapsed < REQUEST_BOUND_S, f"{method} {url} took {elapsed:.1f}s"
    return r


def claim_before(client: httpx.Client, amount: int) -> list[str]:
    """Create coupon ``c`` of ``amount`` and claim it for five users: those acknowledged."""
    assert client.post("/api/coupons", json={"name": "c", "amount": amount}).status_code == 201
    acknowledged = []
    for i in range(5):
        r = client.post("/api/coupons/claim", json={"user_id": f"before-{i}", "coupon_name": "c"})
        assert r.status_code == 200
        acknowledged.append(f"before-{i}")
    return acknowledged


def assert_only_acknowledged(url: str, acknowledged: list[str], amount: int) -> None:
    """Nothing acknowledged is lost, and nothing refused was written, on coupon ``c``."""
    with psycopg.connect(url) as conn:
        users = [
            row[0]
            for row in conn.execute(
                "SELECT user_id FROM claims WHERE coupon_name = 'c' ORDER BY id"
            ).fetchall()
        ]
        remaining = conn.execute("SELECT remaining_amount FROM coupons WHERE name = 'c'").fetchone()
    assert users == acknowledged
    assert remaining == (amount - len(acknowledged),)


def tcp_stalls() -> dict[str, int]:
    """The kernel's counts of TCP retransmission timeouts (Linux; empty elsewhere)."""
    try:
        lines = Path("/proc/net/netstat").read_text().splitlines()
    except OSError:
        return {}
    counts: dict[str, int] = {}
    for names, values in zip(lines[::2], lines[1::2], strict=False):
        for name, value in zip(names.split()[1:], values.split()[1:], strict=False):
            if name in ("TCPTimeouts", "TCPSynRetrans"):
                counts[name] = int(value)
    return counts


def thread_waits() -> dict[str, float]:
    """Seconds each of this process's threads has spent runnable, waiting for a CPU
    (Linux schedstat; empty elsewhere): the machine's share of a slow answer."""
    waits: dict[str, float] = {}
    names = {t.native_id: t.name for t in threading.enumerate()}
    for task in Path("/proc/self/task").glob("*"):
        try:
            waited = int((task / "schedstat").read_text().split()[1])
        except (OSError, IndexError, ValueError):
            continue
        waits[names.get(int(task.name), task.name)] = waited / 1e9
    return waits


def cpu_s() -> float:
    """CPU seconds this process has used, every thread counted (those ended too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def outage_crowd(url: str, n: int) -> dict[str, Any]:
    """``n`` concurrent claims released together; their statuses and the slowest time."""
    barrier = threading.Barrier(n, timeout=30)
    results: list[tuple[int, float]] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        # verify=False: plain HTTP, and no CA bundle loaded per client (200 of them
        # took 8-10 s of CPU in this process, which the server shares).
        with httpx.Client(base_url=url, timeout=60, verify=False) as c:
            barrier.wait()
            start = time.monotonic()
            r = c.post("/api/coupons/claim", json={"user_id": f"crowd-{i}", "coupon_name": "c"})
            with lock:
                results.append((r.status_code, time.monotonic() - start))

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    waits, cpu, wall = thread_waits(), cpu_s(), time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    wall, cpu = time.monotonic() - wall, cpu_s() - cpu
    # The server's threads outlive the crowd: what each waited for a CPU meanwhile.
    waited = {k: v - waits.get(k, 0.0) for k, v in thread_waits().items()}
    loop = max((v for k, v in waited.items() if k.startswith("uvicorn-")), default=None)
    times = sorted(elapsed for _, elapsed in results)
    return {
        "statuses": dict(Counter(status for status, _ in results)),
        "slowest_s": times[-1],
        "wall_s": round(wall, 3),
        "cpu_s": round(cpu, 3),
        "loop_runqueue_s": None if loop is None else round(loop, 3),
        "server_runqueue_s": round(
            sum(v for k, v in waited.items() if k.startswith(("uvicorn-", "coupon-api"))), 3
        ),
        "loadavg": Path("/proc/loadavg").read_text().split()[0],
        # For the failure message: how the times spread (a queue shows as steps).
        "deciles_s": [
            round(times[min(len(times) - 1, len(times) * k // 10)], 3) for k in range(11)
        ],
    }


def test_outage_and_recovery(outage: Outage) -> None:
    db = outage.database
    svc = CouponService.connect(
        db.url, strategy="row_lock", pool_max=8, pool_timeout=POOL_TIMEOUT_S
    )
    try:
        with (
            serve_in_thread(svc) as server,
            httpx.Client(base_url=server.url, timeout=REQUEST_BOUND_S + 5) as client,
        ):
            acknowledged = claim_before(client, 100)

            outage.stop()  # asserts the database is down
            r = timed(client, "GET", "/health")
            assert r.status_code == 503
            assert r.json()["status"] == "unhealthy"
            requests = [
                ("POST", "/api/coupons/claim", {"user_id": "during", "coupon_name": "c"}),
                ("POST", "/api/coupons", {"name": "during", "amount": 1}),
                ("GET", "/api/coupons/c", None),
                ("POST", "/api/coupons/claim", {"user_id": "during-2", "coupon_name": "c"}),
            ]
            for method, url, body in requests:
                r = timed(client, method, url, json=body)
                assert (r.status_code, r.json()) == (503, {"error": "service unavailable"})
            # A crowd during the outage: each waits one pool timeout, not its turn
            # behind others in a small thread pool (anyio's default 40 threads would
            # make the last of 200 wait five pool timeouts).
            breaker = svc.breaker
            assert breaker is not None
            before, stalls = (breaker.state, breaker.opened), tcp_stalls()
            crowd = outage_crowd(server.url, 200)
            figures = (
                f"crowd deciles {crowd['deciles_s']} s; wall {crowd['wall_s']} s, process CPU"
                f" {crowd['cpu_s']} s, server threads waiting for a CPU"
                f" {crowd['server_runqueue_s']} s (event loop {crowd['loop_runqueue_s']} s),"
                f" load {crowd['loadavg']}; breaker (state, times opened)"
                f" before {before}, after {(breaker.state, breaker.opened)}; TCP timeouts"
                f" on this machine meanwhile { ({k: v - stalls.get(k, 0) for k, v in tcp_stalls().items()}) }"
            )
            print(figures)
            assert crowd["statuses"] == {503: 200}
            assert crowd["slowest_s"] < REQUEST_BOUND_S, figures
            # Invalid input is still judged without the database.
            r = timed(client, "POST", "/api/coupons", json={"name": "x"})
            assert r.status_code == 400

            outage.start()  # asserts it came back on its port
            deadline = time.monotonic() + RECOVERY_BOUND_S
            while True:
                r = timed(client, "GET", "/health")
                if r.status_code == 200:
                    break
                assert r.status_code == 503
                assert time.monotonic() < deadline, "no recovery within 30 s"
                time.sleep(0.2)
            recovered_after = RECOVERY_BOUND_S - (deadline - time.monotonic())

            # Claims work again without restarting the server (the pool may still
            # hand out a stale connection once: retried within the recovery bound).
            while True:
                r = timed(
                    client,
                    "POST",
                    "/api/coupons/claim",
                    json={"user_id": "after", "coupon_name": "c"},
                )
                if r.status_code == 200:
                    break
                assert r.status_code == 503
                assert time.monotonic() < deadline
            acknowledged.append("after")
            assert server.running
    finally:
        svc.close()

    assert_only_acknowledged(db.url, acknowledged, 100)
    print(f"recovered {recovered_after:.2f}s after restart")


# -- the circuit breaker: 503 at once during the outage, served again soon after ----------

# The service's default pool timeout: without the breaker every request during the
# outage would wait this long; with it, each must answer in a fraction of it.
DEFAULT_POOL_TIMEOUT_S = 10.0
FAST_BOUND_S = DEFAULT_POOL_TIMEOUT_S / 2


def test_breaker_answers_503_at_once_and_closes_after(outage: Outage) -> None:
    db = outage.database
    svc = CouponService.connect(db.url, strategy="atomic", pool_max=8)
    assert svc.config.pool_timeout == DEFAULT_POOL_TIMEOUT_S
    assert svc.breaker is not None
    try:
        with (
            serve_in_thread(svc) as server,
            httpx.Client(base_url=server.url, timeout=DEFAULT_POOL_TIMEOUT_S + 10) as client,
        ):
            acknowledged = claim_before(client, 500)

            outage.stop()
            slowest = 0.0
            for i in range(20):
                start = time.monotonic()
                r = client.post(
                    "/api/coupons/claim", json={"user_id": f"during-{i}", "coupon_name": "c"}
                )
                slowest = max(slowest, time.monotonic() - start)
                assert (r.status_code, r.json()) == (503, {"error": "service unavailable"})
            assert slowest < FAST_BOUND_S, f"a 503 took {slowest:.2f}s"
            assert svc.breaker.state == "open"
            # A crowd: every one refused at once, none waits a pool timeout.
            crowd = outage_crowd(server.url, 100)
            assert crowd["statuses"] == {503: 100}
            assert crowd["slowest_s"] < FAST_BOUND_S
            r = client.get("/health")
            assert r.status_code == 503

            outage.start()
            up = time.monotonic()
            deadline = up + RECOVERY_BOUND_S
            while True:
                r = client.post("/api/coupons/claim", json={"user_id": "after", "coupon_name": "c"})
                if r.status_code == 200:
                    break
                assert r.status_code == 503
                assert time.monotonic() < deadline, "no recovery"
                time.sleep(0.01)
            recovered_s = time.monotonic() - up
            acknowledged.append("after")
            assert svc.breaker.state == "closed"
            assert svc.breaker.opened >= 1
            assert client.get("/health").status_code == 200
    finally:
        svc.close()
    assert not any(t.name == "breaker-probe" for t in threading.enumerate())

    assert_only_acknowledged(db.url, acknowledged, 500)
    print(f"slowest 503 {slowest * 1000:.1f} ms; first claim {recovered_s:.3f}s after start")


def test_an_outage_logs_one_line_per_breaker_state_and_no_driver_noise(
    outage: Outage, caplog: pytest.LogCaptureFixture
) -> None:
    # Before: psycopg_pool's "error connecting in 'coupon-service' ..." and "discarding
    # broken connection ..." at every attempt, and no line when the breaker probed.
    db = outage.database
    caplog.set_level(logging.INFO)
    svc = CouponService.connect(db.url, strategy="atomic", pool_max=4, pool_min=4)
    try:
        svc.create("c", 100)
        svc.claim("before", "c")
        outage.stop()
        deadline = time.monotonic() + RECOVERY_BOUND_S
        while svc.breaker is not None and svc.breaker.state != "open":
            with pytest.raises(Unavailable):
                svc.claim("during", "c")
            assert time.monotonic() < deadline, "the breaker did not open"
        for _ in range(20):  # refused at once: no line each
            with pytest.raises(Unavailable):
                svc.claim("during", "c")
        time.sleep(1.0)  # probes fail meanwhile, every probe_s: no line each
        outage.start()
        while True:
            try:
                svc.claim("after", "c")
                break
            except Unavailable:
                assert time.monotonic() < deadline, "no recovery"
                time.sleep(0.05)
        assert svc.breaker is not None
        opened = svc.breaker.opened
    finally:
        svc.close()
    told = [r.getMessage() for r in caplog.records if r.name == "coupon_core.breaker"]
    kinds = "".join(m.split(":")[0].split(" ")[1][0] for m in told if m.startswith("circuit "))
    # open, (half-open, open again)*, half-open, closed: one line per change of state.
    assert re.fullmatch(r"o(ho)*hc", kinds), told
    assert kinds.count("o") == opened
    assert len(told) == len(kinds), told  # nothing else at WARNING or INFO
    assert "connection failures in a row and a probe could not connect" in told[0]
    assert re.search(r"open \d+\.\d\ds\)$", told[-1]), told[-1]
    noise = [
        r.getMessage()
        for r in caplog.records
        if r.name.startswith("psycopg") and r.levelno >= logging.WARNING
    ]
    assert noise == []


def test_serve_workers_take_the_timeouts_and_ride_out_an_outage(outage: Outage) -> None:
    # The real command, two worker processes, the options passed through to each.
    db = outage.database
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env.update(DATABASE_URL=db.url, PYTHONPATH=str(ROOT))
    argv = [sys.executable, "-m", "experiments.cli", "serve", "--port", str(port)]
    options = [
        "--workers",
        "2",
        "--pool-size",
        "2",
        "--pool-timeout",
        "8",
        "--connect-timeout",
        "2",
    ]
    proc = subprocess.Popen(
        [*argv, *options], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_serving(proc, base, RECOVERY_BOUND_S)
        for pid in children(proc.pid):
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            assert cmdline[cmdline.index(b"--pool-timeout") + 1] == b"8.0"
            assert cmdline[cmdline.index(b"--connect-timeout") + 1] == b"2.0"
        with httpx.Client(base_url=base, timeout=30) as c:
            assert c.post("/api/coupons", json={"name": "w", "amount": 100}).status_code == 201
            outage.stop()
            # New connections each time: SO_REUSEPORT spreads them over both workers.
            slowest = 0.0
            for i in range(20):
                start = time.monotonic()
                r = httpx.post(
                    f"{base}/api/coupons/claim",
                    json={"user_id": f"d{i}", "coupon_name": "w"},
                    timeout=30,
                )
                slowest = max(slowest, time.monotonic() - start)
                assert r.status_code == 503
            assert slowest < 8 / 2, f"a 503 took {slowest:.2f}s with --pool-timeout 8"
            outage.start()
            deadline = time.monotonic() + RECOVERY_BOUND_S
            ok = 0
            while ok < 4:  # several connections: both workers serve again
                r = httpx.post(
                    f"{base}/api/coupons/claim",
                    json={"user_id": f"a{ok}", "coupon_name": "w"},
                    timeout=30,
                )
                ok += r.status_code == 200
                assert time.monotonic() < deadline, "no recovery"
        proc.send_signal(signal.SIGTERM)
        _out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
