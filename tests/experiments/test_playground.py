"""The playground: knobs map onto each scenario's parameters; a run and a button click."""

from __future__ import annotations

import pytest

from experiments.playground import (
    FAULT_CHOICES,
    SCENARIO_CHOICES,
    STRATEGY_CHOICES,
    Playground,
)


def test_knobs_map_onto_each_scenarios_own_parameters() -> None:
    assert Playground("flash_sale", workers=30, stock=3).params() == (
        {"users": 30, "stock": 3},
        [],
    )
    assert Playground("double_dip", workers=7).params() == ({"requests": 7, "stock": 5}, [])
    assert Playground("mixed_load", workers=4, stock=20).params() == (
        {"workers": 4, "amount": 20},
        [],
    )
    # A fault is its own scenario: pool_exhaustion has workers, but no stock.
    pg = Playground("flash_sale", fault="pool_exhaustion", workers=12)
    assert pg.target == "pool_exhaustion"
    assert pg.params() == ({"workers": 12}, ["stock"])


def test_every_choice_is_offered_and_bad_knobs_are_refused() -> None:
    assert "scale" not in SCENARIO_CHOICES
    assert FAULT_CHOICES[0] == "none"
    assert "input_boundary" not in FAULT_CHOICES
    assert {"row_lock", "atomic", "serializable", "advisory", "lost_update"} <= set(
        STRATEGY_CHOICES
    )
    for bad, match in (
        ({"scenario": "nope"}, "scenario 'nope'"),
        ({"strategy": "rowlock"}, "strategy 'rowlock'"),
        ({"layer": "grpc"}, "layer 'grpc'"),
        ({"fault": "fire"}, "fault 'fire'"),
        ({"workers": 0}, "workers must be a whole number from 1 to 500"),
        ({"stock": 501}, "stock must be"),
        ({"workers": True}, "workers must be"),
    ):
        with pytest.raises(ValueError, match=match):
            Playground(**bad)  # type: ignore[arg-type]


def test_what_a_run_is_expected_to_show() -> None:
    assert Playground(strategy="atomic").expected_pass() is True
    # An equivalent mutant must pass; a killable one may or may not be caught by one run.
    assert Playground(strategy="lock_after_check").expected_pass() is True
    assert Playground(strategy="lost_update").expected_pass() is None
    assert Playground(strategy="mutant:lost_update").expected_pass() is None


@pytest.mark.chaos
def test_a_run_and_a_click_of_run(db_url: str) -> None:
    pg = Playground(
        "flash_sale", strategy="atomic", workers=8, stock=2, seed=3, database_url=db_url
    )
    result = pg.run()
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert result.outcomes()["claim"] == {"ok": 2, "no_stock": 6}
    assert "**PASS**" in pg.describe(result).data

    box = pg.controls()
    assert len(box.children) == 9  # seven knobs, the button, the output area
    widgets = pg._widgets
    widgets["scenario"].value = "double_dip"
    widgets["strategy"].value = "serializable"
    widgets["workers"].value = 4
    widgets["seed"].value = "17"
    widgets["button"].click()
    assert (pg.scenario, pg.strategy, pg.workers, pg.seed) == ("double_dip", "serializable", 4, 17)
    assert pg.last is not None
    assert pg.last.scenario == "double_dip"
    assert pg.last.outcomes()["claim"] == {"ok": 1, "already_claimed": 3}
    assert not widgets["button"].disabled

    widgets["seed"].value = "not a number"
    widgets["button"].click()
    assert pg.last.seed == 17, "a bad seed runs nothing"
