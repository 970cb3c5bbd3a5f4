"""The isolation scenario: forbidden cells show nothing, findings show, a plant is caught."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from coupon_core.bundles import MULTI_READS, register_multi_read, statement_by_statement
from coupon_core.strategies import Conn, FaultHook
from experiments import scenarios
from experiments.scenarios import isolation

pytestmark = pytest.mark.chaos


def _outside_a_transaction(
    conn: Conn, names: Sequence[str], fault: FaultHook | None = None, level: str = ""
) -> list[tuple[str, int, int, list[str]]]:
    # The pool's connections are autocommit: each statement its own snapshot.
    return statement_by_statement(conn.cursor(), names, fault)


def test_every_cell_as_postgresql_promises(db_url: str) -> None:
    result = scenarios.run("isolation", database_url=db_url, seeds=2, seed=7)
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    for cell in isolation.CELLS:
        v = result.verdict(cell.name)
        if cell.expect is None:
            assert v.passed is True, (cell.name, v.detail)
            assert result.summary["anomalies"][cell.name] == {}
        else:
            assert v.label == "finding", (cell.name, v.detail)
            assert v.figures["witness"]["anomaly"] == cell.expect
            assert v.figures["witness"]["edges"]


def test_a_dashboard_reading_outside_a_transaction_fails_a_forbidden_cell(db_url: str) -> None:
    if "test:outside_txn" not in MULTI_READS:
        register_multi_read("test:outside_txn", _outside_a_transaction)
    result = scenarios.run(
        "isolation", database_url=db_url, seeds=2, seed=7, dashboard_read="test:outside_txn"
    )
    v = result.verdict("dashboard/per_statement/repeatable_read")
    assert v.passed is False, v.detail
    assert v.finding is None
    assert "G-single" in v.detail
    assert result.status == "FAIL"


def test_cell_need_is_a_majority_at_least_one() -> None:
    assert isolation.need(3, 0.6) == 2
    assert isolation.need(20, 0.9) == 18
    assert isolation.need(1, 0.0) == 1
