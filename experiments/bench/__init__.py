"""The benchmark harness: claims per second per strategy and layer, against pgbench's own.

Four layers run the same claim against the same server, one cell at a time:

``pgbench``  the strategy's statements as a pgbench custom script (the database's limit)
``psycopg``  the strategy's claim on bare psycopg connections, one per thread: the
             ceiling for a Python client, so that service/psycopg is the service's cost
``service``  ``CouponService.claim`` from N threads in this process
``http``     ``POST /api/coupons/claim`` through uvicorn, from N minimal keep-alive
             clients in a second process (so the load generator does not share our GIL);
             the server processes' CPU time per request is read from /proc around it

Every cell claims on fresh coupons (one hot coupon, or many), with distinct users and
stock that never runs out, for a bounded time. Cells are interleaved (round, then
workload and workers, then strategy, then layer in an order that rotates per round) so
the machine's drift hits all alike; a layer's ratio to pgbench is taken within one
round, side by side. Each block of cells gets services whose pools hold exactly one
connection per worker, as pgbench has one per client. Coupon names are decimal numbers from a run-unique base, because
pgbench can only compute numbers and its statements must be the service's, unchanged.
"""

from __future__ import annotations

from experiments.bench._harness import (
    BenchConfig,
    BenchRun,
    CellResult,
    run,
    run_bench,
    workload_name,
)
from experiments.bench._loads import (
    LAYERS,
    LoadResult,
    check_conservation,
    create_coupons,
    http_load,
    process_cpu_s,
    psycopg_load,
    quantile_ms,
    service_load,
)
from experiments.bench._pgbench import PGBENCH_SCRIPTS, pgbench_load, pgbench_path
from experiments.bench._report import (
    Target,
    format_table,
    summarize,
    targets,
    throughput_chart,
    write_outputs,
)

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
    "process_cpu_s",
    "psycopg_load",
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
