"""A sweep runs the replication scenarios on clusters of their own, never the sweep's database.

The sweep handed every run its one database; failover given a URL wants the user's
failover command (every run skipped) and stale_reads refuses one (every run an error),
so neither could be swept over seeds at all.
"""

from __future__ import annotations

import pytest

from experiments import scenarios
from experiments.sweep import OWN_DATABASE, run_sweep


def test_every_scenario_that_starts_a_database_of_its_own_is_left_its_own() -> None:
    own = {
        name
        for name, s in scenarios.SCENARIOS.items()
        if {"cluster", "database_process"} & set(s.needs)
    }
    assert {"failover", "stale_reads", "database_restart"} <= own
    assert own == OWN_DATABASE
    assert not OWN_DATABASE & set(scenarios.CATALOG)


@pytest.mark.chaos
@pytest.mark.slow
def test_a_sweep_runs_stale_reads_on_its_own_cluster(db_url: str) -> None:
    sweep = run_sweep(
        ["stale_reads"],
        seeds=1,
        strategies=["row_lock"],
        params={"read_from": "primary", "ops_per_worker": 10},
        database_url=db_url,
    )
    rows = sweep.runs.to_dict("records")
    assert [(r["scenario"], r["status"]) for r in rows] == [("stale_reads", "pass")], rows
