"""``coupon-chaos list`` shows what runs: layers, fault, needs, ranges, and the checks a
strategy skips (issue 26, case 8), through the entry point."""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from experiments import scenarios
from experiments.cli import main
from experiments.history import History
from experiments.result import Result, Verdict
from experiments.scenarios import FAULTS, GROUPS, SCENARIOS, Scenario
from experiments.spec import RunSpec


def _list(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    code = main(["list", *args])
    out = capsys.readouterr().out
    assert code == 0, out
    return out


def _block(out: str, name: str) -> str:
    """The lines ``list`` prints for one scenario."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"{name}: "))
    end = next(
        (i for i in range(start + 1, len(lines)) if not lines[i].startswith("    ")), len(lines)
    )
    return "\n".join(lines[start:end])


def test_list_says_partial_failure_skips_its_fault_check_under_atomic(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Old code: ``list`` showed ``fault_injected`` for every strategy (and had no
    ``--strategy``: exit 2), while an atomic run injects nothing."""
    atomic = _block(_list(capsys, "--strategy", "atomic"), "partial_failure")
    assert "skipped under atomic: fault_injected: atomic claims never reach" in atomic
    row_lock = _block(_list(capsys), "partial_failure")
    assert "fault_injected" in row_lock
    assert "skipped under" not in row_lock


def test_list_refuses_an_unknown_strategy(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as err:
        main(["list", "--strategy", "no_such"])
    assert err.value.code == 2
    assert "no_such" in capsys.readouterr().err


@pytest.mark.parametrize("name", FAULTS)
def test_list_shows_each_fault_scenarios_layers_fault_needs_and_ranges(
    name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = SCENARIOS[name]
    block = _block(_list(capsys), name)
    assert f"    layers: {', '.join(scenario.layers)}" in block
    assert scenario.fault, f"{name} declares no FAULT"
    assert f"    fault: {scenario.fault}" in block
    assert f"    needs: {', '.join(scenario.needs)};" in block
    numeric = [
        k
        for k, v in scenario.defaults.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    assert set(numeric) <= set(scenario.ranges), f"{name}: figures without a range"
    for k, r in scenario.ranges.items():
        assert f"{k}: {r.describe()}" in block


def test_list_names_the_cluster_and_locust_a_scenario_needs(
    capsys: pytest.CaptureFixture[str],
) -> None:
    out = _list(capsys)
    assert "needs: cluster," in _block(out, "failover")
    assert "needs: cluster," in _block(out, "stale_reads")
    assert "needs: locust," in _block(out, "locust_stampede")
    assert "needs: server," in _block(out, "process_crash")


# -- a planted scenario: its declared fault and skips must show -----------------------

_PLANT = "planted_fault"


def _plant_module(passes_skipped: bool) -> types.ModuleType:
    """A fault scenario whose check ``fault_took_effect`` is declared skipped under
    atomic; with ``passes_skipped`` its run passes that check anyway."""
    mod = types.ModuleType(f"tests_plant.{_PLANT}")
    mod.NAME = _PLANT  # type: ignore[attr-defined]
    mod.TITLE = "Planted"  # type: ignore[attr-defined]
    mod.DESCRIPTION = "a scenario planted by the list tests"  # type: ignore[attr-defined]
    mod.DEFAULTS = {}  # type: ignore[attr-defined]
    mod.SHARED = "own"  # type: ignore[attr-defined]
    mod.CHECKS = ("fault_took_effect",)  # type: ignore[attr-defined]
    mod.FAULT = "a planted fault nobody lists"  # type: ignore[attr-defined]
    mod.NEEDS = ("service",)  # type: ignore[attr-defined]

    def skips(spec: RunSpec) -> dict[str, str]:
        return {"fault_took_effect": "cannot happen here"} if spec.strategy == "atomic" else {}

    def run(spec: RunSpec) -> Result:
        skipped = spec.strategy == "atomic" and not passes_skipped
        v = (
            Verdict.skip("fault_took_effect", "cannot happen here")
            if skipped
            else Verdict("fault_took_effect", True, "took effect")
        )
        return Result(_PLANT, 1, spec.layer, spec.strategy, {}, History(), [v])

    mod.SKIPS = skips  # type: ignore[attr-defined]
    mod.run = run  # type: ignore[attr-defined]
    return mod


@pytest.fixture
def planted(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Scenario]]:
    def plant(passes_skipped: bool = False) -> Scenario:
        mod = _plant_module(passes_skipped)
        monkeypatch.setitem(sys.modules, "tests_plant", types.ModuleType("tests_plant"))
        monkeypatch.setitem(sys.modules, mod.__name__, mod)
        monkeypatch.setitem(GROUPS, "faults", (*GROUPS["faults"], _PLANT))
        return scenarios.register(mod.__name__)

    assert _PLANT not in SCENARIOS
    try:
        yield plant
    finally:
        # register() writes SCENARIOS itself, which monkeypatch does not see: the plant
        # is taken out here (it once stayed, and failed every registry test after it).
        SCENARIOS.pop(_PLANT, None)


def test_list_shows_a_planted_scenarios_fault_and_what_it_skips(
    planted: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """Old code: neither the declared fault nor the skipped check was listed."""
    planted()
    block = _block(_list(capsys, "--strategy", "atomic"), _PLANT)
    assert "    fault: a planted fault nobody lists" in block
    assert "    skipped under atomic: fault_took_effect: cannot happen here" in block
    assert "skipped under" not in _block(_list(capsys), _PLANT)


def test_a_run_that_passes_a_check_declared_skipped_is_the_labs_defect(planted: Any) -> None:
    """What ``list`` says is skipped is never passed: a run that passes it raises."""
    scenario = planted(passes_skipped=True)
    assert scenario.run(strategy="row_lock").passed
    with pytest.raises(RuntimeError, match="declared skipped under atomic passed"):
        scenario.run(strategy="atomic")


def test_a_planted_run_that_skips_as_declared_is_no_pass(planted: Any) -> None:
    scenario = planted()
    result = scenario.run(strategy="atomic")
    assert [v.name for v in result.skipped] == ["fault_took_effect"]
    assert result.status == "skipped"


@pytest.mark.chaos
@pytest.mark.slow
def test_partial_failure_on_atomic_skips_exactly_what_list_says(db_url: str) -> None:
    scenario = SCENARIOS["partial_failure"]
    result = scenario.run(seed=3, strategy="atomic", database_url=db_url)
    declared = scenario.skipped_checks(scenario.spec(strategy="atomic"))
    assert {v.name: v.figures["reason"] for v in result.skipped} == declared
    assert result.passed, [f"{v.name}: {v.detail}" for v in result.failed]
