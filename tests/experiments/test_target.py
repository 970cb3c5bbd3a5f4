"""An external target: the catalog over HTTP against ``coupon-chaos serve`` run as another process."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from coupon_core.database import free_port
from experiments import scenarios
from experiments.checks import read_state
from experiments.lab import NO_DATABASE, LabError, open_lab
from experiments.scenarios import CATALOG, FAULTS, SCENARIOS
from tests.experiments.test_contract import CATCHES, WHY, caught_for_its_rule
from tests.wrong_server import serve_wrong

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-m", "experiments.cli"]
START_BOUND_S = 90.0  # two worker processes starting on a busy 2-core machine
#: The checks that read the tables: skipped without the target's database.
TABLE_CHECKS = {
    "conservation",
    "one_claim_per_user",
    "no_orphan_claims",
    "no_negative_stock",
    "claims_match_history",
}
#: Small figures: the catalog's shapes, quickly.
SMALL: dict[str, dict[str, Any]] = {"scale": {"sizes": (20, 40)}}


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


def _run_cli(*args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """``coupon-chaos`` with ``args`` from the repository root, output captured."""
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        env=_env(),
        cwd=ROOT,
        timeout=timeout,
        check=False,
    )


@pytest.fixture(scope="module")
def served(database: Any) -> Iterator[str]:
    """``coupon-chaos serve --workers 2`` in a process group of its own, on its own port."""
    port = free_port()
    proc = subprocess.Popen(
        [*CLI, "serve", "--database-url", database.url, "--port", str(port), "--workers", "2"],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=_env(),
        cwd=ROOT,
        process_group=0,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + START_BOUND_S
        seen = b""
        while b"serving on" not in seen:
            left = deadline - time.monotonic()
            assert left > 0, f"serve did not start within {START_BOUND_S:.0f}s: {seen!r}"
            ready, _, _ = select.select([proc.stdout], [], [], left)
            chunk = os.read(proc.stdout.fileno(), 4096) if ready else b""
            assert chunk or not ready, f"serve exited: {seen!r}"
            seen += chunk
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def _rows(db_url: str, prefix: str) -> tuple[int, int]:
    with psycopg.connect(db_url, autocommit=True) as conn:
        state = read_state(conn, prefix)
    return len(state.coupons), len(state.claims)


@pytest.mark.parametrize("name", CATALOG)
def test_catalog_against_the_target_with_its_database(name: str, served: str, db_url: str) -> None:
    result = scenarios.run(
        name, layer="http", target=served, database_url=db_url, cleanup=True, **SMALL.get(name, {})
    )
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert not result.skipped
    assert result.params["target"] == served
    # Every table check ran, and the run's own rows are gone afterwards.
    assert all(result.verdict(c).passed for c in TABLE_CHECKS)
    assert result.summary["cleanup"] == "done"
    assert result.summary["deleted_coupons"] >= 1
    assert _rows(db_url, result.summary["prefix"]) == (0, 0)


@pytest.mark.parametrize("name", CATALOG)
def test_catalog_against_the_target_without_its_database(name: str, served: str) -> None:
    result = scenarios.run(name, layer="http", target=served, **SMALL.get(name, {}))
    # The history-only checks ran and passed; each table check is skipped, never passed.
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    skipped = {v.name for v in result.skipped}
    assert skipped >= TABLE_CHECKS
    for v in result.skipped:
        assert v.passed is None
        assert v.label == "skipped"
        assert NO_DATABASE in v.detail
    for ran in ("statuses_allowed", "no_server_errors", "no_driver_text", "linearizable"):
        assert result.verdict(ran).passed is True
    assert result.summary["tables"] == f"skipped: {NO_DATABASE}"


def test_cleanup_touches_only_the_runs_own_rows(served: str, db_url: str, unique: str) -> None:
    # Another tenant's coupon and claim in the same database, under a name of its own.
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, 5, 4)", (unique,)
        )
        conn.execute("INSERT INTO claims (user_id, coupon_name) VALUES ('someone', %s)", (unique,))
    result = scenarios.run(
        "flash_sale", layer="http", target=served, database_url=db_url, cleanup=True
    )
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert _rows(db_url, result.summary["prefix"]) == (0, 0)
    assert _rows(db_url, unique) == (1, 1)


@pytest.mark.parametrize("with_database", [True, False], ids=["with-db", "without-db"])
def test_network_faults_through_a_proxy_in_front_of_the_target(
    with_database: bool, served: str, db_url: str
) -> None:
    result = scenarios.run(
        "network_faults",
        target=served,
        seed=5,
        database_url=db_url if with_database else None,
        cleanup=with_database,
    )
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert result.params["target"] == served
    # The proxy stood between the lab and the target, and its reset cut requests.
    proxy = result.summary["proxy"]
    assert proxy["accepted"] > 0
    assert proxy["resets"] + proxy["refused"] > 0
    assert result.verdict("latency_applied").passed
    assert bool(result.skipped) is not with_database
    if with_database:
        assert _rows(db_url, result.summary["prefix"]) == (0, 0)


@pytest.mark.parametrize("name", [n for n in FAULTS if SCENARIOS[n].target_skip_reason("x")])
def test_scenarios_that_need_more_are_skipped(name: str, served: str, db_url: str) -> None:
    result = scenarios.run(name, target=served, database_url=db_url)
    assert not result.passed  # skipped is not passed ...
    assert not result.failed  # ... nor failed
    (check,) = result.verdicts
    assert check.skipped
    assert check.name == "runnable"
    assert "cannot run against an external target" in check.detail
    assert len(result.history) == 0


def test_needs_are_declared() -> None:
    for name, scenario in SCENARIOS.items():
        assert scenario.needs, f"{name} declares no needs"
    assert SCENARIOS["process_crash"].target_skip_reason("http://x") is not None
    assert all(SCENARIOS[n].target_skip_reason("http://x") is None for n in CATALOG)


@pytest.mark.parametrize(
    ("target", "layer", "message"),
    [
        ("http://127.0.0.1:1", "service", "layer must be 'http'"),
        ("ftp://127.0.0.1:1", "http", "http"),
        ("http://127.0.0.1:1/api", "http", "no path"),
    ],
)
def test_a_bad_target_is_refused(target: str, layer: str, message: str) -> None:
    with pytest.raises(LabError, match=message), open_lab(layer=layer, target=target):
        pass


def test_run_command_against_the_target(served: str, tmp_path: Path) -> None:
    done = _run_cli(
        "run",
        "flash_sale",
        "connection_drop",
        "--target",
        served,
        "--out",
        str(tmp_path),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "1 of 2 passed, 1 skipped" in done.stdout
    summary = json.loads((tmp_path / "latest" / "summary.json").read_text())
    by_name = {s["name"]: s for s in summary["scenarios"]}
    assert by_name["flash_sale"]["passed"] is True
    assert by_name["flash_sale"]["checks_skipped"] >= len(TABLE_CHECKS)
    assert by_name["connection_drop"]["passed"] is False
    assert "cannot run against an external target" in by_name["connection_drop"]["skipped"]
    index = (tmp_path / "latest" / "index.html").read_text()
    assert "1 skipped (not run)" in index


def test_run_command_against_the_target_and_its_database(
    served: str, db_url: str, tmp_path: Path
) -> None:
    # The suite hands the target's database to the kernel as TARGET_DATABASE_URL.
    done = _run_cli(
        "run",
        "flash_sale",
        "--target",
        served,
        "--database-url",
        db_url,
        "--cleanup",
        "--out",
        str(tmp_path),
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "latest" / "summary.json").read_text())
    (job,) = summary["scenarios"]
    assert job["passed"] is True
    assert job["checks_skipped"] == 0
    assert {c["name"] for c in job["checks"]} >= TABLE_CHECKS
    assert f"--target {served}" in summary["rerun"]
    # A variable the reader sets: nothing sets TARGET_DATABASE_URL for them.
    assert '--database-url "$DATABASE_URL"' in summary["rerun"]
    # The row's replay keeps the target too (it dropped --target).
    assert f"--target {served}" in job["rerun"]
    assert '--database-url "$DATABASE_URL"' in job["rerun"]


def test_run_command_refuses_a_target_on_the_service_layer(tmp_path: Path) -> None:
    done = _run_cli(
        "run", "flash_sale", "--target", "http://127.0.0.1:1", "--layer", "service", timeout=120
    )
    assert done.returncode != 0
    assert "--target is reached over HTTP" in done.stderr + done.stdout


# -- a deliberately wrong server as the target (tests/wrong_server.py) -----------------


@pytest.mark.parametrize("with_database", [True, False], ids=["with-db", "without-db"])
@pytest.mark.parametrize("variant", sorted(CATCHES))
def test_each_wrong_server_variant_is_caught_as_a_target(
    variant: str, with_database: bool, db_url: str
) -> None:
    scenario, figures = CATCHES[variant]
    with serve_wrong(db_url, variant) as url:
        result = scenarios.run(
            scenario,
            layer="http",
            seed=11,
            target=url,
            database_url=db_url if with_database else None,
            cleanup=with_database,
            **figures,
        )
    # The contract is judged from the history alone: caught with or without the tables.
    verdict = result.verdict("contract_kept")
    assert verdict.passed is False, verdict.detail
    assert not result.passed
    assert caught_for_its_rule(variant, result.history.ops)
    assert bool(result.skipped) is not with_database


def test_the_unbugged_double_passes_as_a_target(db_url: str) -> None:
    with serve_wrong(db_url, None) as url:
        result = scenarios.run("flash_sale", layer="http", seed=11, target=url, users=20)
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert result.verdict("contract_kept").passed is True


#: Point 3's rules (issue 25), one wrong server each: caught through ``coupon-chaos run
#: --target`` as well, the way a user points the lab at a server of their own.
STRICT_RULES = (
    "driver_text_extra_field",
    "duplicate_error_key",
    "latin1_charset",
    "utf8_bom",
    "utf16_bom",
    "amount_out_of_range",
    "remaining_above_amount",
    "blank_claimed_by",
    "repeated_claimed_by",
)


@pytest.mark.slow
@pytest.mark.parametrize("with_database", [True, False], ids=["with-db", "without-db"])
@pytest.mark.parametrize("variant", STRICT_RULES)
def test_each_strict_rule_is_caught_through_the_run_command(
    variant: str, with_database: bool, db_url: str, tmp_path: Path
) -> None:
    scenario, _ = CATCHES[variant]  # the command runs the scenario's own figures
    database = ["--database-url", db_url, "--cleanup"] if with_database else []
    with serve_wrong(db_url, variant) as url:
        done = _run_cli(
            "run",
            scenario,
            "--target",
            url,
            *database,
            "--seed",
            "11",
            "--out",
            str(tmp_path),
            timeout=600,
        )
    assert done.returncode != 0, done.stdout + done.stderr
    summary = json.loads((tmp_path / "latest" / "summary.json").read_text())
    (job,) = summary["scenarios"]
    assert job["passed"] is False
    checks = {c["name"]: c for c in job["checks"]}
    kept = checks["contract_kept"]
    assert kept["passed"] is False, kept
    # Caught for the rule the server breaks: its answers named by why they broke it.
    assert WHY[variant] in kept["detail"], kept["detail"]
    # The tables are read with the target's database, and only then.
    tables = [checks[name] for name in TABLE_CHECKS]
    assert all(bool(c.get("skipped")) is not with_database for c in tables), tables
