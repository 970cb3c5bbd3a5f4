"""The scenario notebooks are thin and clean: no outputs, literal parameters, no def/class."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest

from experiments import suite
from experiments.scenarios import CATALOG, SCENARIOS

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
COMMON = {"seed": None, "layer": "service", "strategy": "row_lock", "database_url": None}


def _read(path: Path) -> Any:
    return nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]


def _literal_assignments(source: str) -> dict[str, Any]:
    values = {}
    for node in ast.parse(source).body:
        assert isinstance(node, ast.Assign), f"not an assignment: {ast.unparse(node)}"
        (target,) = node.targets
        assert isinstance(target, ast.Name)
        values[target.id] = ast.literal_eval(node.value)  # raises unless a literal
    return values


def test_every_catalog_scenario_has_a_notebook() -> None:
    covered = {nb.scenario: nb for nb in suite.discover()}
    assert set(CATALOG) <= set(covered), f"no notebook for {set(CATALOG) - set(covered)}"
    assert all(covered[name].layers == suite.LAYERS for name in CATALOG)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_is_thin_and_committed_clean(path: Path) -> None:
    nb = _read(path)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert nb.cells[0].cell_type == "markdown"
    assert nb.cells[0].source.startswith("# "), "a title first"
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell in code:
        assert cell.outputs == [], f"outputs committed in {path.name}"
        assert cell.execution_count is None
        for node in ast.walk(ast.parse(cell.source)):
            assert not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef), (
                f"def/class in {path.name}: {cell.source[:60]}"
            )
    params = [c for c in code if "parameters" in c.metadata.get("tags", [])]
    assert len(params) == 1, "exactly one cell tagged parameters"
    values = _literal_assignments(params[0].source)
    assert values["seed"] is None
    assert values["database_url"] is None
    assert {k: values[k] for k in COMMON if k in values} == {
        k: COMMON[k] for k in COMMON if k in values
    }


@pytest.mark.parametrize("name", CATALOG)
def test_catalog_notebook_asserts_each_expectation_and_records(name: str) -> None:
    (path,) = [nb.path for nb in suite.discover() if nb.scenario == name]
    nb = _read(path)
    code = [c for c in nb.cells if c.cell_type == "code"]
    values = _literal_assignments(
        next(c for c in code if "parameters" in c.metadata["tags"]).source
    )
    assert {k: values[k] for k in COMMON} == COMMON
    assert values["out_dir"] is None
    assert "out_dir" in code[-1].source, "the last cell records the result"
    asserts = [c for c in code if "assert " in c.source]
    assert len(asserts) >= 10, "one assertion cell per expectation"
    assert all(", " in c.source.split("assert ", 1)[1] for c in asserts), "each says why"


# Detection and performance are notebooks of the suite but not scenarios of the registry.
SCENARIO_NOTEBOOKS = [
    p for p in NOTEBOOKS if _read(p).metadata["coupon_chaos"]["scenario"] in SCENARIOS
]


@pytest.mark.parametrize("path", SCENARIO_NOTEBOOKS, ids=[p.stem for p in SCENARIO_NOTEBOOKS])
def test_scenario_notebook_offers_the_registry_defaults(path: Path) -> None:
    nb = _read(path)
    name = nb.metadata["coupon_chaos"]["scenario"]
    params = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    values = _literal_assignments(params.source)
    for key, default in SCENARIOS[name].defaults.items():
        assert values[key] == default, f"{path.name}: {key}={values[key]!r}, registry {default!r}"
    calls = [c.source for c in nb.cells if f'scenarios.run(\n    "{name}"' in c.source]
    assert len(calls) == 1, "one call to scenarios.run"


@pytest.mark.slow
def test_generated_notebooks_are_up_to_date() -> None:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_notebooks.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr


@pytest.mark.slow
@pytest.mark.chaos
def test_a_notebook_runs_as_opened_with_no_parameters(tmp_path: Path) -> None:
    # As in JupyterLab: nothing injected; the scenario finds DATABASE_URL or embeds one.
    import papermill

    out = tmp_path / "executed.ipynb"
    papermill.execute_notebook(
        str(ROOT / "notebooks" / "06_double_dip.ipynb"),
        str(out),
        kernel_name="python3",
        progress_bar=False,
        shutdown_kernel="immediate",
        resources={"metadata": {"path": str(ROOT / "notebooks")}},
    )
    executed = _read(out)
    images = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "image/png" in o.get("data", {})
    ]
    assert len(images) == 4
    errors = [
        o
        for c in executed.cells
        if c.cell_type == "code"
        for o in c.outputs
        if o.output_type == "error"
    ]
    assert errors == []


def test_every_registered_scenario_has_a_notebook() -> None:
    covered = {_read(p).metadata["coupon_chaos"]["scenario"] for p in SCENARIO_NOTEBOOKS}
    assert covered == set(SCENARIOS), f"without a notebook: {sorted(set(SCENARIOS) - covered)}"


def test_nbmake_and_pytest_share_one_timeout(pytestconfig: pytest.Config) -> None:
    # pyproject states it once (pytest-timeout); conftest.py gives it to nbmake.
    if not pytestconfig.pluginmanager.hasplugin("nbmake"):
        pytest.skip("nbmake is not loaded (make unit leaves it out; make test loads it)")
    stated = float(pytestconfig.getoption("timeout", None) or pytestconfig.getini("timeout"))
    assert stated > 0
    assert pytestconfig.option.nbmake_timeout == int(stated)
