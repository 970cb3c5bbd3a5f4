"""Each fault scenario passes on a real database, on the service layer and over HTTP."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

from experiments.scenarios import SCENARIOS

FAULT_SCENARIOS = [
    "pool_exhaustion",
    "query_timeout",
    "connection_drop",
    "partial_failure",
    "lock_contention",
    "network_faults",
    "negative_stock",
]


@pytest.fixture(autouse=True)
def _quiet_pool() -> Iterator[None]:
    # psycopg_pool logs every dead connection it discards; under faults that is the point.
    logger = logging.getLogger("psycopg.pool")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.parametrize("layer", ["service", "http"])
@pytest.mark.parametrize("name", FAULT_SCENARIOS)
def test_fault_scenario_passes(name: str, layer: str, db_url: str) -> None:
    result = SCENARIOS[name].run(seed=1234, layer=layer, database_url=db_url)
    failed = [f"{v.name}: {v.detail}" for v in result.failed]
    assert not failed, failed
    assert result.verdict("no_leaks").passed is True
    assert result.summary["ops"] > 0
    assert {v.name for v in result.verdicts} == set(SCENARIOS[name].checks())


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.parametrize("layer", ["service", "http"])
def test_database_restart_on_its_own_database(layer: str) -> None:
    result = SCENARIOS["database_restart"].run(seed=99, layer=layer)
    assert result.passed, [f"{v.name}: {v.detail}" for v in result.failed]
    assert result.summary["service_recovery_s"] is not None
    assert result.summary["service_recovery_s"] < 30


@pytest.mark.chaos
@pytest.mark.slow
def test_database_restart_given_a_url_runs_every_check_on_its_own_cluster(db_url: str) -> None:
    result = SCENARIOS["database_restart"].run(seed=1, database_url=db_url)
    assert result.passed, [f"{v.name}: {v.detail}" for v in result.failed]
    assert {v.name for v in result.verdicts} == set(SCENARIOS["database_restart"].checks())
    assert "cluster of its own" in result.summary["database"]
    assert "given by URL" in result.summary["database"]


@pytest.mark.chaos
@pytest.mark.slow
def test_partial_failure_on_atomic_never_reaches_the_point(db_url: str) -> None:
    result = SCENARIOS["partial_failure"].run(seed=3, strategy="atomic", database_url=db_url)
    assert result.passed, [f"{v.name}: {v.detail}" for v in result.failed]
    assert result.summary["hook_reached"] == 0


@pytest.mark.chaos
@pytest.mark.slow
def test_conservation_catches_a_partial_claim(db_url: str, unique: str) -> None:
    """The check connection_drop relies on fails when a claim row lacks its decrement."""
    import psycopg

    from experiments.checks import conservation, read_state

    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, 5, 5)",
            (f"{unique}-c",),
        )
        conn.execute("INSERT INTO claims (user_id, coupon_name) VALUES ('u', %s)", (f"{unique}-c",))
        assert conservation(read_state(conn, unique)).passed is False


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.parametrize("layer", ["service", "http"])
def test_lock_contention_on_atomic(layer: str, db_url: str) -> None:
    """The one-statement claim also waits on the held row: none succeeds while it is held."""
    result = SCENARIOS["lock_contention"].run(
        seed=77, layer=layer, strategy="atomic", database_url=db_url
    )
    assert result.passed, [f"{v.name}: {v.detail}" for v in result.failed]
    assert result.summary["waited_then_ok"] > 0


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.parametrize("layer", ["service", "http"])
def test_connection_drop_on_atomic_outlasts_the_kills_and_stays_decidable(
    layer: str, db_url: str
) -> None:
    """The fastest strategy: the load lasts through every planned kill round (400 ops
    per worker ran out before the last), and the history stays small enough for the
    linearizability check to decide (unpaced, 4000 ops per worker made ~10,000 ops on
    the service layer and the check ran out of time: unknown in 3 of 3 seeds)."""
    result = SCENARIOS["connection_drop"].run(
        seed=1, layer=layer, strategy="atomic", database_url=db_url
    )
    assert result.verdict("backends_killed").passed is True, result.verdict("backends_killed")
    assert result.verdict("linearizable").passed is True, result.verdict("linearizable").detail
    assert result.passed, [f"{v.name}: {v.detail}" for v in result.failed]


@pytest.mark.chaos
@pytest.mark.slow
def test_process_crash_on_atomic_stays_decidable(db_url: str) -> None:
    """Unpaced, the fastest strategy made 6,400-7,400 ops over HTTP and the
    linearizability check ran out of time (unknown in 2 of 2 seeds); paced, it decides."""
    result = SCENARIOS["process_crash"].run(seed=1, strategy="atomic", database_url=db_url)
    assert result.verdict("linearizable").passed is True, result.verdict("linearizable").detail
    assert result.passed, [f"{v.name}: {v.detail}" for v in result.failed]
