"""The run spec: one set of defaults, a scenario's own declared values winning, ranges
refused before any work, and every reader (list, notebooks, the CLI, the module) agreeing."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from experiments import scenarios, suite
from experiments.scenarios import SCENARIOS
from experiments.spec import COMMON_DEFAULTS, Range, RunSpec, SpecError, merge

ROOT = Path(__file__).resolve().parents[2]


def test_the_common_defaults_are_the_run_specs_fields() -> None:
    spec = RunSpec("x")
    assert {k: getattr(spec, k) for k in COMMON_DEFAULTS} == COMMON_DEFAULTS
    assert COMMON_DEFAULTS["op_timeout_s"] == 10.0
    assert COMMON_DEFAULTS["run_timeout_s"] == 60.0


def test_a_fault_scenarios_declared_timeouts_win() -> None:
    """The reviewer's case: COMMON_DEFAULTS (10 s / 60 s) overrode the 5 s / 30 s that
    connection_drop declares, so notebooks and the CLI ran it at 10/60."""
    spec = SCENARIOS["connection_drop"].spec()
    assert (spec.op_timeout_s, spec.run_timeout_s) == (5.0, 30.0)
    assert SCENARIOS["connection_drop"].params()["op_timeout_s"] == 5.0
    # Given by the caller, the caller's value wins over the scenario's.
    assert SCENARIOS["connection_drop"].spec(op_timeout_s=2.0).op_timeout_s == 2.0


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_every_reader_sees_the_same_values(name: str) -> None:
    """list, the notebook's parameters cell and the registry agree, for every scenario."""
    scenario = SCENARIOS[name]
    spec = scenario.spec()
    for key, value in scenario.common.items():
        assert getattr(spec, key) == value
    notebook = next(nb for nb in suite.discover() if nb.scenario == name)
    for key, value in scenario.defaults.items():
        shown = ast.literal_eval(notebook.defaults[key])
        assert shown == value, key
    assert dict(spec.params) == scenario.defaults


@pytest.mark.slow
def test_list_shows_each_scenarios_own_values() -> None:
    out = subprocess.run(
        [str(Path(sys.executable).parent / "coupon-chaos"), "list"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        timeout=120,
    ).stdout
    block = out.split("connection_drop:", 1)[1].split("\n\n", 1)[0]
    assert "runs with: op_timeout_s=5.0, run_timeout_s=30.0" in block
    assert "claim_results, get_results, backends_killed" in block


@pytest.mark.parametrize(
    ("name", "given", "message"),
    [
        ("flash_sale", {"users": 100_000_000}, "users=100000000 is out of range"),
        ("flash_sale", {"stock": -5}, "stock=-5 is out of range"),
        ("flash_sale", {"users": 0}, "users=0 is out of range"),
        ("mixed_load", {"create_ratio": 2.5}, "create_ratio=2.5 is out of range"),
        ("flash_sale", {"op_timeout_s": 0}, "op_timeout_s=0 is out of range"),
        ("flash_sale", {"stokc": 5}, "unknown parameter"),
    ],
)
def test_a_value_out_of_its_range_is_refused_before_any_work(
    name: str, given: dict[str, object], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SpecError, match=message):
        scenarios.run(name, **given)
    # Refused before anything started: no seed line, no run.
    assert "seed=" not in capsys.readouterr().out


def test_an_unknown_strategy_is_refused_by_the_spec_before_any_work(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Before: only the CLI knew the strategies; a notebook run by papermill with
    # strategy="nosuch" started its database and failed in CouponService.connect.
    with pytest.raises(SpecError, match=r"^unknown strategy 'nosuch'; choose from advisory, "):
        scenarios.run("flash_sale", strategy="nosuch")
    with pytest.raises(SpecError, match="unknown strategy 5"):
        merge("x", defaults={}, given={"strategy": 5})
    assert "seed=" not in capsys.readouterr().out
    # The lab's mutants are strategies a run may name, registered or not yet.
    assert merge("x", defaults={}, given={"strategy": "mutant:lost_update"}).strategy == (
        "mutant:lost_update"
    )


def test_a_figure_may_not_shadow_a_common_parameter() -> None:
    with pytest.raises(SpecError, match="shadow common parameters"):
        merge("x", defaults={"pool_max": 4})
    with pytest.raises(SpecError, match="names no common parameter"):
        merge("x", defaults={}, common={"stock": 4})


def test_a_range_describes_itself() -> None:
    assert Range(1, 2000, "a thread each").describe() == "1 <= value <= 2000 (a thread each)"
    Range(0, 1).check("ratio", 0.5)
    with pytest.raises(SpecError):
        Range(0, 1).check("ratio", [0.5, 2])


def test_the_result_records_the_spec_it_ran_with_the_url_masked() -> None:
    spec = SCENARIOS["connection_drop"].spec(database_url="postgresql://u:s3cret@h/db")
    common = spec.common()
    assert common["database_url"] == "postgresql://u:***@h/db"
    assert common["op_timeout_s"] == 5.0


def test_a_scenario_that_cannot_run_over_http_is_refused_against_a_target() -> None:
    """A target is reached over HTTP: a scenario that runs only in-process cannot be run
    against one, and says so before any work; one that runs on both runs on HTTP."""
    with pytest.raises(
        SpecError, match=r"inproc: cannot run against a target \(it runs on \['service'\]\)"
    ):
        merge("inproc", defaults={}, given={"target": "http://127.0.0.1:9"}, layers=("service",))
    spec = merge("both", defaults={}, given={"target": "http://127.0.0.1:9", "layer": "service"})
    assert spec.layer == "http"
    assert spec.requested_layer == "service"
