"""The isolation scenario: forbidden cells show nothing, findings show (its plants:
test_isolation_plants.py)."""

from __future__ import annotations

import pytest

from experiments import scenarios
from experiments.scenarios import isolation
from experiments.spec import SpecError

pytestmark = pytest.mark.chaos


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


def test_cell_need_is_a_majority_at_least_one() -> None:
    assert isolation.need(3, 0.6) == 2
    assert isolation.need(20, 0.9) == 18
    assert isolation.need(1, 0.0) == 1


def test_cells_chooses_which_cells_run() -> None:
    assert isolation.chosen("all") == isolation.CELLS
    one = isolation.chosen("campaign/lock/serializable, dashboard/snapshot/read_committed")
    assert [c.name for c in one] == [
        "campaign/lock/serializable",
        "dashboard/snapshot/read_committed",
    ]
    for bad in ("", "campaign", "all,campaign/naive/serializable", 3):
        with pytest.raises(SpecError):
            isolation.chosen(bad)
