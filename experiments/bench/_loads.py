"""The loads: claims from threads on the service, or over HTTP from a second process."""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Literal

import psycopg

from coupon_core import CouponError, CouponService, get_strategy
from coupon_core.strategies import ClaimConnection

Layer = Literal["pgbench", "psycopg", "service", "http"]
LAYERS: tuple[Layer, ...] = ("pgbench", "psycopg", "service", "http")
MAX_STOCK = 2_147_483_647  # never runs out within a bounded cell


# -- results -------------------------------------------------------------------------------


@dataclass
class LoadResult:
    """What one layer did in one cell: claims, other outcomes, time, latencies (ns)."""

    claims: int
    errors: dict[str, int]
    elapsed_s: float
    latencies_ns: list[int] = field(default_factory=list)
    client_cpu_s: float = 0.0  # CPU the load generator itself used (http only)
    detail: str = ""

    @property
    def per_second(self) -> float:
        return self.claims / self.elapsed_s if self.elapsed_s > 0 else 0.0


def quantile_ms(latencies_ns: Sequence[int], q: float) -> float:
    """The ``q`` quantile of latencies in ms (nearest rank), NaN when there are none."""
    if not latencies_ns:
        return float("nan")
    ordered = sorted(latencies_ns)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index] / 1e6


def process_cpu_s(pids: Sequence[int]) -> float:
    """User plus system CPU seconds the processes ``pids`` have used so far (Linux /proc).

    How the HTTP layer's server CPU per request is measured: read before and after a
    cell, from outside the server processes, so the measurement costs them nothing.
    """
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for pid in pids:
        with open(f"/proc/{pid}/stat", "rb") as f:
            # The fields after the command name (which may hold spaces) are plain.
            fields = f.read().rsplit(b")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / ticks


# -- coupons and checks -----------------------------------------------------------------


def create_coupons(url: str, base: int, count: int, amount: int = MAX_STOCK) -> list[str]:
    """Insert ``count`` coupons named ``base``, ``base + 1``, ... with plain SQL."""
    names = [str(base + i) for i in range(count)]
    with psycopg.connect(url, autocommit=True) as conn, conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, %s, %s)",
            [(n, amount, amount) for n in names],
        )
    return names


def check_conservation(url: str, names: Sequence[str]) -> tuple[int, bool]:
    """The claim rows on these coupons, and whether amount = remaining + claims for each."""
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute(
            """
            SELECT c.name, c.amount, c.remaining_amount, count(cl.id)
            FROM coupons c LEFT JOIN claims cl ON cl.coupon_name = c.name
            WHERE c.name = ANY(%s) GROUP BY c.name, c.amount, c.remaining_amount
            """,
            (list(names),),
        ).fetchall()
    total = sum(int(str(r[3])) for r in rows)
    ok = len(rows) == len(names) and all(r[1] == int(str(r[2])) + int(str(r[3])) for r in rows)
    return total, ok


# -- the three layers ----------------------------------------------------------------------


def _threaded(
    workers: int, duration_s: float, claim: Callable[[int, int], str | None]
) -> LoadResult:
    """Run ``claim(worker, i)`` in a loop on ``workers`` threads released together.

    ``claim`` returns None for a claim, else the outcome's kind. Each thread stops at the
    deadline by itself; a call in flight then finishes (each is bounded by its timeout).
    """
    barrier = threading.Barrier(workers + 1)
    start_ns = [0]
    results: list[tuple[int, dict[str, int], list[int]]] = []
    lock = threading.Lock()

    def work(worker: int) -> None:
        ok, errors, lat = 0, dict[str, int](), list[int]()
        barrier.wait()
        deadline = start_ns[0] + int(duration_s * 1e9)
        i = 0
        now = time.perf_counter_ns()
        while now < deadline:
            outcome = claim(worker, i)
            done = time.perf_counter_ns()
            lat.append(done - now)
            if outcome is None:
                ok += 1
            else:
                errors[outcome] = errors.get(outcome, 0) + 1
            now, i = done, i + 1
        with lock:
            results.append((ok, errors, lat))

    threads = [threading.Thread(target=work, args=(w,), daemon=True) for w in range(workers)]
    for t in threads:
        t.start()
    start_ns[0] = time.perf_counter_ns()
    barrier.wait()
    for t in threads:
        t.join(duration_s + 60)
    elapsed = (time.perf_counter_ns() - start_ns[0]) / 1e9
    errors: dict[str, int] = {}
    latencies: list[int] = []
    for _, errs, lat in results:
        for kind, n in errs.items():
            errors[kind] = errors.get(kind, 0) + n
        latencies.extend(lat)
    return LoadResult(sum(r[0] for r in results), errors, elapsed, latencies)


def service_load(
    service: CouponService, names: Sequence[str], workers: int, duration_s: float, tag: str
) -> LoadResult:
    """Claims through ``service`` from ``workers`` threads, each user new, coupons at random."""
    rngs = [random.Random(f"{tag}-{w}") for w in range(workers)]

    def claim(worker: int, i: int) -> str | None:
        try:
            service.claim(f"{tag}-{worker}-{i}", rngs[worker].choice(names))
        except CouponError as err:
            return err.kind
        return None

    return _threaded(workers, duration_s, claim)


def psycopg_load(
    url: str, strategy: str, names: Sequence[str], workers: int, duration_s: float, tag: str
) -> LoadResult:
    """The strategy's claim on bare psycopg: one connection per thread, no pool, no service.

    The ceiling for any Python client of this driver in this process: what the service
    adds on top (pool, validation, error translation) is service/psycopg; what Python
    and psycopg cost against libpq is psycopg/pgbench. A database error the service
    would translate is counted by its class name.
    """
    claim_on = get_strategy(strategy).claim
    # The service's connection class (one kept cursor), so the two differ by the service.
    conns = [ClaimConnection.connect(url, autocommit=True) for _ in range(workers)]
    rngs = [random.Random(f"{tag}-{w}") for w in range(workers)]

    def claim(worker: int, i: int) -> str | None:
        try:
            claim_on(conns[worker], f"{tag}-{worker}-{i}", rngs[worker].choice(names), None)
        except CouponError as err:
            return err.kind
        except psycopg.Error as err:
            return type(err).__name__
        return None

    try:
        return _threaded(workers, duration_s, claim)
    finally:
        for conn in conns:
            conn.close()


class _KeepAliveClient:
    """A minimal HTTP/1.1 client on one keep-alive connection: POST JSON, read the status.

    httpx spent about 400 us of CPU per request here, as much as the server itself: on
    two cores the load generator would have been the bottleneck. This one sends bytes
    it has mostly prepared and reads only the status line and Content-Length.
    """

    def __init__(self, host: str, port: int) -> None:
        self._address = (host, port)
        self._head = (
            f"POST /api/coupons/claim HTTP/1.1\r\nHost: {host}:{port}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()
        self._sock: socket.socket | None = None
        self._buffer = b""

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self._address, timeout=30.0)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock, self._buffer = sock, b""
        return sock

    def post(self, body: bytes) -> int:
        """POST ``body``; the response's status (the body is read and dropped)."""
        sock = self._sock or self._connect()
        sock.sendall(b"%s%d\r\n\r\n%s" % (self._head, len(body), body))
        while (end := self._buffer.find(b"\r\n\r\n")) < 0:
            self._buffer += self._recv(sock)
        head, rest = self._buffer[:end].decode("latin-1"), self._buffer[end + 4 :]
        lines = head.split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        fields = {k.strip().lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}
        length = int(fields.get("content-length", "0"))
        while len(rest) < length:
            rest += self._recv(sock)
        self._buffer = rest[length:]
        if fields.get("connection", "").lower() == "close":
            self.close()
        return status

    def _recv(self, sock: socket.socket) -> bytes:
        chunk = sock.recv(65536)
        if not chunk:
            self.close()
            raise ConnectionError("server closed the connection")
        return chunk

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _http_load_here(
    url: str, names: Sequence[str], workers: int, duration_s: float, tag: str
) -> LoadResult:
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    clients = [_KeepAliveClient(host, port) for _ in range(workers)]
    rngs = [random.Random(f"{tag}-{w}") for w in range(workers)]

    def claim(worker: int, i: int) -> str | None:
        body = {"user_id": f"{tag}-{worker}-{i}", "coupon_name": rngs[worker].choice(names)}
        try:
            status = clients[worker].post(json.dumps(body).encode())
        except OSError as err:
            clients[worker].close()
            return type(err).__name__
        return None if status == 200 else f"http_{status}"

    try:
        for client in clients:  # connect before the clock starts, as pgbench does
            client._connect()
        cpu0 = time.process_time()
        result = _threaded(workers, duration_s, claim)
        result.client_cpu_s = time.process_time() - cpu0
    finally:
        for client in clients:
            client.close()
    return result


def http_load_child() -> None:
    """Entry of the load generator process: arguments as JSON on stdin, result on stdout."""
    args = json.loads(sys.stdin.read())
    result = _http_load_here(
        args["url"], args["names"], args["workers"], args["duration_s"], args["tag"]
    )
    json.dump(asdict(result), sys.stdout)


def http_load(
    url: str,
    names: Sequence[str],
    workers: int,
    duration_s: float,
    tag: str,
    *,
    in_process: bool = False,
) -> LoadResult:
    """HTTP claims against ``url`` from a second Python process (or this one if asked).

    A plain ``python -m experiments.bench`` child, not multiprocessing: spawn would
    re-import the caller's main module, which scripts and notebooks do not guard.
    """
    if in_process:
        return _http_load_here(url, names, workers, duration_s, tag)
    args = {"url": url, "names": list(names), "workers": workers, "duration_s": duration_s}
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.bench"],
        input=json.dumps({**args, "tag": tag}),
        capture_output=True,
        text=True,
        timeout=duration_s + 120,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"HTTP load generator failed: {proc.stderr.strip()[-800:]}")
    return LoadResult(**json.loads(proc.stdout))
