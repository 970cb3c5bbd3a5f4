"""The harness: cells interleaved over rounds, workloads, workers, strategies, layers."""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import psycopg

from coupon_core import CouponService, ServiceConfig, apply_schema
from experiments.bench._loads import (
    LAYERS,
    Layer,
    check_conservation,
    create_coupons,
    http_load,
    process_cpu_s,
    psycopg_load,
    quantile_ms,
    service_load,
)
from experiments.bench._pgbench import pgbench_load

if TYPE_CHECKING:
    import pandas as pd

    from coupon_core.workers import ServerGroup


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
    #: HTTP only: the server processes' CPU time (user + system) per request answered,
    #: in microseconds; NaN for the other layers.
    server_cpu_us: float
    detail: str


@dataclass(frozen=True)
class BenchConfig:
    """What to measure; the defaults are the full grid, ``quick()`` a small one."""

    strategies: tuple[str, ...] = (
        "advisory",
        "atomic",
        "row_lock",
        "row_lock_pipelined",
        "serializable",
    )
    workloads: tuple[int, ...] = (1, 64)  # coupons per cell: one hot coupon, or many
    workers: tuple[int, ...] = (1, 4, 16, 64)
    layers: tuple[Layer, ...] = LAYERS
    duration_s: float = 2.0
    rounds: int = 2
    #: uvicorn worker processes behind the HTTP layer; 0: one per core (at most one
    #: per worker). One process is held to one core by the GIL (~350 us of CPU a claim).
    server_processes: int = 0
    seed: int | None = None  # None (or 0): choose one; it is printed and recorded

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
    #: Coupon names start at (10**8 + salt) * 10**6: new in every run, so a rerun with
    #: the same seed on a database that keeps its rows never meets its old coupons.
    salt: int = field(default_factory=lambda: random.SystemRandom().randrange(10**9))

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


def server_processes(config: BenchConfig, workers: int) -> int:
    """How many server processes the HTTP layer gets for ``workers`` clients."""
    wanted = config.server_processes or os.cpu_count() or 1
    return max(1, min(wanted, workers))


@contextlib.contextmanager
def _doors(
    url: str, config: BenchConfig, workers: int
) -> Iterator[tuple[dict[str, CouponService], dict[str, ServerGroup]]]:
    """For the layers that need them: a service per strategy with a pool of exactly
    ``workers`` connections, and a group of server processes per strategy with
    ``workers`` connections between them.

    Sized like pgbench (one connection per client): psycopg_pool hands out its idle
    connections first in, first out, so a pool larger than the load rotates through
    backends gone cold; measured here, 1 worker on a pool of 64 claimed 4x slower than
    on a pool of 1, and 16 workers on 64 about 0.6x of 16 on 16.
    """
    from coupon_core.workers import serve_processes

    with contextlib.ExitStack() as stack:
        services: dict[str, CouponService] = {}
        # Only for the service layer: since HTTP runs in server processes of its own,
        # these would otherwise sit idle beside every other layer's cells.
        for strategy in config.strategies if "service" in config.layers else ():
            svc_config = ServiceConfig(strategy=strategy, pool_min=workers, pool_max=workers)
            svc = stack.enter_context(CouponService.connect(url, svc_config))
            svc.pool.wait(timeout=30)
            services[strategy] = svc
        groups: dict[str, ServerGroup] = {}
        if "http" in config.layers:
            procs = server_processes(config, workers)
            pool_size = -(-workers // procs)
            # Started side by side: each group's workers spend ~1 s importing.
            with concurrent.futures.ThreadPoolExecutor(len(config.strategies)) as starter:
                starting = [
                    starter.submit(
                        serve_processes,
                        url,
                        processes=procs,
                        strategy=strategy,
                        pool_size=pool_size,
                        apply_schema=False,
                    )
                    for strategy in config.strategies
                ]
            failures: list[BaseException] = []
            for strategy, future in zip(config.strategies, starting, strict=True):
                try:
                    groups[strategy] = stack.enter_context(future.result())
                except BaseException as err:  # the started groups stop with the stack
                    failures.append(err)
            if failures:
                raise failures[0]
        yield services, groups


def _pgbench_target(url: str) -> dict[str, Any]:
    """Where pgbench connects: the URL's host, port, user, database and password."""
    info = psycopg.conninfo.conninfo_to_dict(url)
    return {
        "host": str(info.get("host") or "127.0.0.1"),
        "port": int(str(info.get("port") or 5432)),
        "user": str(info.get("user") or "postgres"),
        "dbname": str(info.get("dbname") or info.get("user") or "postgres"),
        "password": str(info["password"]) if info.get("password") else None,
    }


@dataclass(frozen=True)
class _Cell:
    """Where a cell sits in the run, and what it measures."""

    round: int
    order: int
    coupons: int
    workers: int
    strategy: str
    layer: Layer


def run_bench(
    url: str,
    config: BenchConfig | None = None,
    *,
    progress: Callable[[CellResult], None] | None = None,
) -> BenchRun:
    """Run every cell of ``config`` against the database at ``url`` (the schema is
    applied first, once: pgbench and the server processes take it as given)."""
    apply_schema(url)
    config = config or BenchConfig()
    seed = config.seed or random.SystemRandom().randrange(1, 10**6)
    run = BenchRun(seed, config, [])
    order = -1
    for rnd, coupons, workers, cells in _schedule(config):
        with _doors(url, config, workers) as (services, groups):
            for strategy, layer in cells:
                order += 1
                cell = _Cell(rnd, order, coupons, workers, strategy, layer)
                run.cells.append(_measure(url, run, cell, services, groups))
                if progress is not None:
                    progress(run.cells[-1])
    return run


def _measure(
    url: str,
    run: BenchRun,
    cell: _Cell,
    services: dict[str, CouponService],
    groups: dict[str, ServerGroup],
) -> CellResult:
    """Run one cell on fresh coupons and check conservation on them afterwards."""
    # Coupon names: base + i, where base is run-unique (salt) and cell-unique (order).
    base = (10**8 + run.salt) * 10**6 + cell.order * 100
    names = create_coupons(url, base, cell.coupons)
    tag, duration = f"b{run.seed}-{cell.order}", run.config.duration_s
    server_cpu_s = float("nan")  # measured for the HTTP layer only
    if cell.layer == "pgbench":
        target = _pgbench_target(url)
        load = pgbench_load(
            target.pop("host"),
            target.pop("port"),
            cell.strategy,
            base,
            cell.coupons,
            cell.workers,
            duration_s=duration,
            **target,
        )
    elif cell.layer == "psycopg":
        load = psycopg_load(url, cell.strategy, names, cell.workers, duration, tag)
    elif cell.layer == "service":
        load = service_load(services[cell.strategy], names, cell.workers, duration, tag)
    else:
        group = groups[cell.strategy]
        cpu0 = process_cpu_s(group.pids)
        load = http_load(group.url, names, cell.workers, duration, tag)
        server_cpu_s = process_cpu_s(group.pids) - cpu0
        load.detail = f"server_processes={server_processes(run.config, cell.workers)}"
    db_claims, conserved = check_conservation(url, names)
    # pgbench counts transactions (a refusal is one too); the database counts claims.
    claims = db_claims if cell.layer == "pgbench" else load.claims
    errors = [f"{k}={v}" for k, v in sorted(load.errors.items())]
    requests = load.claims + sum(load.errors.values())
    server_cpu_us = server_cpu_s / requests * 1e6 if requests else float("nan")
    return CellResult(
        round=cell.round,
        order=cell.order,
        strategy=cell.strategy,
        workload=workload_name(cell.coupons),
        coupons=cell.coupons,
        workers=cell.workers,
        layer=cell.layer,
        claims=claims,
        claims_per_s=claims / load.elapsed_s if load.elapsed_s > 0 else 0.0,
        p50_ms=quantile_ms(load.latencies_ns, 0.50),
        p99_ms=quantile_ms(load.latencies_ns, 0.99),
        errors=sum(load.errors.values()),
        db_claims=db_claims,
        conserved=conserved,
        client_cpu_share=load.client_cpu_s / load.elapsed_s if load.elapsed_s else 0.0,
        server_cpu_us=server_cpu_us,
        detail=" ".join([*errors, load.detail]).strip(),
    )


def run(database_url: str | None = None, **params: Any) -> BenchRun:
    """``run_bench`` on ``database_url``, or on a fresh embedded PostgreSQL when None.

    ``params`` are ``BenchConfig`` fields; lists (as papermill injects them) are fine.
    """
    from coupon_core.database import provisioned

    fields: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in params.items()}
    config = BenchConfig(**fields)
    with provisioned(database_url) as db:
        return run_bench(db.url, config)
