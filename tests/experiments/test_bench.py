"""The benchmark harness: pgbench scripts against a real database, and the harness's table."""

from __future__ import annotations

import concurrent.futures
import inspect
import re
import uuid
from pathlib import Path

import psycopg
import pytest

import coupon_core.strategies
from coupon_core import (
    CouponError,
    CouponService,
    ServiceConfig,
    apply_schema,
    available_strategies,
)
from experiments.bench import (
    PGBENCH_SCRIPTS,
    BenchConfig,
    check_conservation,
    create_coupons,
    format_table,
    http_load,
    pgbench_load,
    psycopg_load,
    quantile_ms,
    run_bench,
    summarize,
    targets,
    write_outputs,
)


@pytest.fixture
def db_url(db_url: str) -> str:
    """The session database with the schema (the service applies it; pgbench does not)."""
    apply_schema(db_url)
    return db_url


def _host_port(url: str) -> tuple[str, int]:
    info = psycopg.conninfo.conninfo_to_dict(url)
    return str(info.get("host") or "127.0.0.1"), int(str(info.get("port") or 5432))


def _base() -> int:
    """A run-unique numeric base for coupon names (pgbench can only compute numbers)."""
    return (2 * 10**8 + uuid.uuid4().int % 10**8) * 10**6


def _statements(script: str) -> list[str]:
    """The SQL of a pgbench script, without meta commands and transaction control."""
    sql = "\n".join(line for line in script.splitlines() if not line.startswith("\\"))
    found = []
    for raw in re.split(r";\s*\n|\\aset\s*\n", sql + "\n"):
        statement = " ".join(raw.split())
        if statement and statement not in ("BEGIN", "COMMIT", "ROLLBACK"):
            found.append(statement)
    return found


def _normalise(sql: str) -> str:
    return " ".join(sql.split())


def test_every_strategy_has_a_script() -> None:
    assert sorted(PGBENCH_SCRIPTS) == available_strategies()


@pytest.mark.parametrize("strategy", ["row_lock", "advisory", "serializable"])
def test_scripts_run_the_strategies_statements(strategy: str) -> None:
    # pgbench variables stand where the service binds parameters; the one other
    # difference is the alias `AS prior`, which names the column for \aset.
    source = _normalise(inspect.getsource(coupon_core.strategies))
    for statement in _statements(PGBENCH_SCRIPTS[strategy]):
        as_service = re.sub(r":(coupon|user)\b", "%s", statement.replace(" AS prior", ""))
        assert as_service in source, statement


def test_atomic_script_is_the_one_cte_statement() -> None:
    (statement,) = _statements(PGBENCH_SCRIPTS["atomic"])
    as_service = re.sub(r":(coupon|user)\b", r"%(\1)s", statement)
    assert as_service == _normalise(coupon_core.strategies.ATOMIC_CLAIM_SQL)


def test_quantiles_use_nearest_rank() -> None:
    assert quantile_ms([3_000_000, 1_000_000, 2_000_000], 0.5) == 2.0
    assert quantile_ms(list(range(1, 101)), 0.99) == 99 / 1e6
    assert quantile_ms([], 0.5) != quantile_ms([], 0.5)  # NaN when nothing was measured


def _cell(
    rnd: int, workload: str, layer: str, rate: float, strategy: str = "row_lock", **extra: object
) -> dict[str, object]:
    """One synthetic cell at 16 workers: ``rate`` claims/s, fixed latencies, no errors."""
    return {
        "round": rnd,
        "strategy": strategy,
        "workload": workload,
        "workers": 16,
        "layer": layer,
        "claims_per_s": rate,
        "p50_ms": 1.0,
        "p99_ms": 2.0,
        "errors": 0,
        "conserved": True,
        **extra,
    }


def _cells(rates: dict[tuple[int, str, str], float]) -> list[dict[str, object]]:
    """Synthetic cells: (round, workload, layer) -> claims/s, one strategy, 16 workers."""
    return [_cell(rnd, workload, layer, rate) for (rnd, workload, layer), rate in rates.items()]


def test_ratios_are_taken_within_a_round_and_targets_name_the_ceiling() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        _cells(
            {
                (0, "hot", "pgbench"): 3000.0,
                (0, "hot", "psycopg"): 1500.0,
                (0, "hot", "service"): 1200.0,
                (1, "hot", "pgbench"): 1000.0,  # a slow round: ratios still within it
                (1, "hot", "psycopg"): 600.0,
                (1, "hot", "service"): 540.0,
            }
        )
    )
    summary = summarize(frame)
    service = summary[summary["layer"] == "service"].iloc[0]
    assert service["ratio_min"] == pytest.approx(0.40)
    assert service["ratio_max"] == pytest.approx(0.54)
    assert service["ratio"] == pytest.approx(0.47)
    assert service["vs_psycopg"] == pytest.approx((0.8 + 0.9) / 2)
    (hot,) = [t for t in targets(summary) if t.name.startswith("row_lock service/pgbench, hot")]
    assert hot.met is False
    assert hot.line() == (
        "MISSED  row_lock service/pgbench, hot, 16 workers: 0.470 (goal >= 0.85; bare psycopg 0.55)"
    )
    table = format_table(summary)
    assert "0.85" in table.splitlines()[-1]  # the service row shows its share of psycopg


def _service_outcomes(url: str, strategy: str, coupon: str, users: int) -> dict[str, int]:
    outcomes: dict[str, int] = {}
    with CouponService.connect(url, ServiceConfig(strategy=strategy, pool_max=5)) as svc:

        def claim(i: int) -> str:
            try:
                svc.claim(f"user-{i}", coupon)
            except CouponError as err:
                return err.kind
            return "ok"

        with concurrent.futures.ThreadPoolExecutor(5) as pool:
            for kind in pool.map(claim, range(users)):
                outcomes[kind] = outcomes.get(kind, 0) + 1
    return outcomes


@pytest.mark.parametrize("strategy", sorted(PGBENCH_SCRIPTS))
def test_pgbench_script_gives_the_services_outcome_on_a_stock_limited_coupon(
    db_url: str, strategy: str
) -> None:
    host, port = _host_port(db_url)
    base = _base()
    (by_pgbench,) = create_coupons(db_url, base, 1, amount=10)
    (by_service,) = create_coupons(db_url, base + 1, 1, amount=10)

    # 5 clients x 10 transactions: 50 claims by distinct users on a stock of 10.
    load = pgbench_load(host, port, strategy, base, 1, 5, transactions=10)
    service = _service_outcomes(db_url, strategy, by_service, 50)

    assert load.claims == 50
    assert load.errors == {}
    rows, conserved = check_conservation(db_url, [by_pgbench])
    assert conserved
    assert rows == 10
    assert service == {"ok": 10, "no_stock": 40}
    with psycopg.connect(db_url) as conn:
        remaining = conn.execute(
            "SELECT remaining_amount FROM coupons WHERE name = ANY(%s) ORDER BY name",
            ([by_pgbench, by_service],),
        ).fetchall()
    assert remaining == [(0,), (0,)]


def test_pgbench_clients_aborted_by_an_error_are_counted_not_fatal(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # PostgreSQL 18.6 once aborted a serializable pgbench client with an internal error
    # in the last cell of a 10-minute run: the run must record it and go on.
    failing = "\\if :client_id = 0\nSELECT 1 / 0;\n\\else\nSELECT 1;\n\\endif\n"
    monkeypatch.setitem(PGBENCH_SCRIPTS, "row_lock", failing)
    host, port = _host_port(db_url)
    load = pgbench_load(host, port, "row_lock", _base(), 1, 2, transactions=5)
    assert load.errors == {"aborted": 1}
    assert load.claims == 5  # the other client's transactions
    assert "division by zero" in load.detail


def test_pgbench_script_claims_nothing_on_a_missing_coupon(db_url: str) -> None:
    host, port = _host_port(db_url)
    base = _base()  # no coupon by these names: every transaction takes the not-found branch
    load = pgbench_load(host, port, "row_lock", base, 4, 2, transactions=5)
    assert load.claims == 10
    assert check_conservation(db_url, []) == (0, True)
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT count(*) FROM claims WHERE coupon_name = ANY(%s)",
            ([str(base + i) for i in range(4)],),
        ).fetchone()
    assert row == (0,)


@pytest.mark.slow
@pytest.mark.slow
def test_harness_table_has_a_row_per_layer_and_writes_its_files(
    db_url: str, tmp_path: Path
) -> None:
    config = BenchConfig(
        strategies=("atomic",), workloads=(1,), workers=(2,), duration_s=1.0, rounds=1
    )
    run = run_bench(db_url, config)

    summary = summarize(run.frame())
    assert [(r.strategy, r.workload, r.workers, r.layer) for r in summary.itertuples()] == [
        ("atomic", "hot", 2, "pgbench"),
        ("atomic", "hot", 2, "psycopg"),
        ("atomic", "hot", 2, "service"),
        ("atomic", "hot", 2, "http"),
    ]
    assert summary["conserved"].all()
    assert (summary["claims_per_s"] > 0).all()
    assert (summary["errors"] == 0).all()
    pgbench_row = summary[summary["layer"] == "pgbench"].iloc[0]
    assert pgbench_row["ratio"] == 1.0
    for cell in run.cells:
        assert cell.claims == cell.db_claims  # every claim counted is a row, and back
    table = format_table(summary)
    assert len(table.splitlines()) == 2 + 4
    service_row = summary[summary["layer"] == "service"].iloc[0]
    assert service_row["vs_psycopg"] > 0  # the service's share of the bare client's speed
    assert {t.name for t in targets(summary, workers=2)} >= {
        "atomic service/pgbench, hot, 2 workers",
        "atomic http/pgbench, hot, 2 workers",
    }
    written = write_outputs(run, tmp_path)
    assert {p.name for p in written} == {
        "cells.csv",
        "summary.csv",
        "summary.txt",
        "throughput-hot.png",
    }
    assert all(p.stat().st_size > 0 for p in written)


@pytest.mark.parametrize("strategy", ["atomic", "row_lock"])
def test_psycopg_load_claims_the_stock_and_counts_refusals(db_url: str, strategy: str) -> None:
    base = _base()
    (coupon,) = create_coupons(db_url, base, 1, amount=5)
    load = psycopg_load(db_url, strategy, [coupon], 3, 0.5, f"bare-{strategy}")
    missing = psycopg_load(db_url, strategy, [str(base + 1)], 1, 0.2, "bare-missing")
    assert load.claims == 5
    assert set(load.errors) == {"no_stock"}
    assert len(load.latencies_ns) == 5 + load.errors["no_stock"]
    assert missing.claims == 0
    assert set(missing.errors) == {"not_found"}
    assert check_conservation(db_url, [coupon]) == (5, True)


@pytest.mark.slow
def test_harness_applies_the_schema_and_runs_pgbench_on_the_urls_database(db_url: str) -> None:
    # A database of its own on the same server, without the schema: the harness
    # applies it, and pgbench must claim in this database, not in "postgres".
    dbname = f"bench_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(db_url, autocommit=True) as admin:
        admin.execute(psycopg.sql.SQL("CREATE DATABASE {}").format(psycopg.sql.Identifier(dbname)))
    url = psycopg.conninfo.make_conninfo(db_url, dbname=dbname)
    try:
        config = BenchConfig(
            strategies=("atomic",),
            workloads=(1,),
            workers=(1,),
            layers=("pgbench", "psycopg"),
            duration_s=0.5,
            rounds=1,
        )
        run = run_bench(url, config)
        assert [(c.layer, c.conserved) for c in run.cells] == [
            ("pgbench", True),
            ("psycopg", True),
        ]
        assert all(c.db_claims > 0 and c.claims == c.db_claims for c in run.cells)
    finally:
        with psycopg.connect(db_url, autocommit=True) as admin:
            admin.execute(
                psycopg.sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                    psycopg.sql.Identifier(dbname)
                )
            )


def test_http_load_counts_refusals_by_status(db_url: str) -> None:
    from coupon_core.server import serve_in_thread

    base = _base()
    (coupon,) = create_coupons(db_url, base, 1, amount=3)
    with (
        CouponService.connect(db_url, ServiceConfig(strategy="atomic", pool_max=2)) as svc,
        serve_in_thread(svc, port=0) as server,
    ):
        # In this process, so the minimal client's own parsing is what is under test.
        stocked = http_load(server.url, [coupon], 2, 0.5, "h", in_process=True)
        missing = http_load(server.url, [str(base + 1)], 1, 0.2, "m", in_process=True)
    assert stocked.claims == 3
    assert set(stocked.errors) == {"http_400"}  # out of stock, once the 3 are gone
    assert missing.claims == 0
    assert set(missing.errors) == {"http_404"}
    assert check_conservation(db_url, [coupon]) == (3, True)


def test_process_cpu_counts_what_a_child_burned() -> None:
    import subprocess
    import sys

    from experiments.bench import process_cpu_s

    # The child burns 0.3 s of CPU (by its own clock, not the wall's), says so, then
    # idles until told to exit, so its /proc entry is still there to read.
    burn = (
        "import sys, time\n"
        "while time.process_time() < 0.3: pass\n"
        "print('burnt', flush=True)\n"
        "sys.stdin.read()\n"
    )
    child = subprocess.Popen(
        [sys.executable, "-c", burn], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline() == "burnt\n"
        used = process_cpu_s([child.pid])
        assert 0.25 <= used < 30  # /proc counts whole clock ticks (10 ms)
        assert process_cpu_s([child.pid, child.pid]) == pytest.approx(2 * used, abs=0.05)
    finally:
        assert child.stdin is not None
        assert child.stdout is not None
        child.stdin.close()
        child.wait(30)
        child.stdout.close()


def test_http_targets_take_the_service_as_base_and_the_cpu_as_a_cost() -> None:
    import pandas as pd

    rows = []
    rates = {
        # (strategy, layer): (claims/s in round 0, round 1)
        ("atomic", "pgbench"): (10000.0, 8000.0),
        ("atomic", "service"): (9000.0, 6000.0),
        ("atomic", "http"): (6300.0, 3600.0),  # 0.70 and 0.60 of the service, same round
        ("row_lock", "pgbench"): (2000.0, 1000.0),
        ("row_lock", "service"): (1000.0, 900.0),
        ("row_lock", "http"): (900.0, 500.0),
        ("row_lock_pipelined", "pgbench"): (9999.0, 9999.0),  # not the reference
        ("row_lock_pipelined", "service"): (1500.0, 1400.0),
        ("row_lock_pipelined", "http"): (1300.0, 1100.0),
    }
    for (strategy, layer), per_round in rates.items():
        for rnd, rate in enumerate(per_round):
            for workload in ("hot", "64_coupons"):
                cpu_us = (100.0 + 40 * rnd) if layer == "http" else float("nan")
                rows.append(_cell(rnd, workload, layer, rate, strategy, server_cpu_us=cpu_us))
    summary = summarize(pd.DataFrame(rows))
    found = {t.name: t for t in targets(summary)}

    many = found["atomic http/service, 64_coupons, 16 workers"]
    assert many.measured == pytest.approx(0.65)
    assert many.met is True
    hot = found["atomic http/service, hot, 16 workers"]
    assert (hot.goal, hot.met) == (0.70, False)
    cpu = found["atomic http server CPU per claim request (us), hot, 16 workers"]
    assert cpu.measured == pytest.approx(120.0)  # the median of 100 and 140
    assert cpu.met is True  # at the goal: a cost is met at or under it
    assert cpu.line().startswith("   MET  atomic http server CPU")
    assert "goal <= 120" in cpu.line()
    (design,) = [t for t in found.values() if t.name.startswith("fastest row-lock design")]
    # The best of the two through HTTP (median 1200/s) over pgbench's row_lock (1500/s).
    assert design.name.startswith("fastest row-lock design (row_lock_pipelined)")
    assert design.measured == pytest.approx(1200 / 1500)
    assert design.context == "row_lock 0.47"
    table = format_table(summary)
    http_line = next(line for line in table.splitlines() if "atomic" in line and "http" in line)
    assert http_line.rstrip().endswith("120")
