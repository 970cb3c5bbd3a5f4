"""The suite end to end: papermill really runs notebooks, HTML and summary.json are written."""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path
from typing import Any

import nbformat as _nbformat
import pytest

from experiments import suite
from experiments.cli import main
from experiments.cli_checks import UsageError

# nbformat's functions are untyped; one Any instead of an ignore at every call.
nbformat: Any = _nbformat

# A tiny notebook of the suite's shape: it reaches the run's database (its URL in the
# kernel's environment, as the scenarios read it), records a Result with a hand-made
# history, and asserts a claim count given as a literal.
_RUN = """import os
import time

import psycopg

from experiments.history import History, Op
from experiments.result import Result, Verdict

t0 = time.perf_counter()
with psycopg.connect(database_url or os.environ["DATABASE_URL"]) as conn:
    one = conn.execute("SELECT 1").fetchone()[0]
{crash}history = History(origin_ns=0)
history.append(Op(0, 0, "claim", "c", invoke_ns=0, complete_ns=2_000_000, result="ok"))
history.append(Op(1, 1, "claim", "c", invoke_ns=0, complete_ns=3_000_000, result="no_stock"))
result = Result(
    scenario="tiny", seed=seed, layer=layer, strategy=strategy, params={{}}, history=history,
    verdicts=[Verdict("database_answers", one == 1, f"SELECT 1 returned {{one}}")],
    duration_s=time.perf_counter() - t0,
)"""


def _new_notebook(path: Path, layers: tuple[str, ...] = ("service",)) -> Any:
    """An empty notebook the suite discovers as scenario ``path.stem``."""
    nb: Any = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["coupon_chaos"] = {"scenario": path.stem, "layers": list(layers)}
    return nb


def write_notebook(
    path: Path, expect_ok: int = 1, crash: bool = False, layers: tuple[str, ...] = ("service",)
) -> Path:
    nb = _new_notebook(path, layers)
    params = nbformat.v4.new_code_cell(
        'seed = None\nlayer = "service"\nstrategy = "row_lock"\ndatabase_url = None\n'
        f"out_dir = None\nexpect_ok = {expect_ok}"
    )
    params.metadata["tags"] = ["parameters"]
    code = nbformat.v4.new_code_cell
    nb.cells = [
        nbformat.v4.new_markdown_cell(f"# {path.stem}\n\nA notebook for the suite's tests."),
        params,
        code(_RUN.format(crash='raise RuntimeError("the experiment crashed")\n' if crash else "")),
        code(
            'ok = result.outcomes()["claim"].get("ok", 0)\n'
            'assert ok == expect_ok, f"expected {expect_ok} successful claims, got {ok}"'
        ),
        code("if out_dir:\n    result.save(out_dir)"),
    ]
    nbformat.write(nb, path)
    return path


def test_derived_seeds_are_stable_and_distinct() -> None:
    assert suite.derive_seed(7, "flash_sale") == suite.derive_seed(7, "flash_sale")
    assert suite.derive_seed(7, "flash_sale") != suite.derive_seed(8, "flash_sale")
    assert suite.derive_seed(7, "flash_sale") != suite.derive_seed(7, "double_dip")
    assert 0 <= suite.derive_seed(123, "scale") < 2**31


def test_discover_reads_scenario_layers_and_parameters(tmp_path: Path) -> None:
    write_notebook(tmp_path / "b_two.ipynb", layers=("service", "http"))
    write_notebook(tmp_path / "a_one.ipynb")
    found = suite.discover(tmp_path)
    assert [nb.scenario for nb in found] == ["a_one", "b_two"]
    assert found[0].layers == ("service",)
    assert found[1].layers == ("service", "http")
    assert found[0].parameters == {
        "seed",
        "layer",
        "strategy",
        "database_url",
        "out_dir",
        "expect_ok",
    }
    assert found[0].title == "a_one"


def test_plan_jobs_keeps_supported_layers_and_rejects_unknown_names(tmp_path: Path) -> None:
    write_notebook(tmp_path / "one.ipynb", layers=("service",))
    write_notebook(tmp_path / "two.ipynb", layers=("service", "http"))
    notebooks = suite.discover(tmp_path)
    jobs = suite.plan_jobs(notebooks, None, suite.LAYERS, "atomic", 5)
    assert [(j.notebook.scenario, j.layer) for j in jobs] == [
        ("one", "service"),
        ("two", "service"),
        ("two", "http"),
    ]
    # Both layers of a scenario run the same plan: one seed per scenario.
    assert jobs[1].seed == jobs[2].seed == suite.derive_seed(5, "two")
    # Never the database URL: it reaches the kernel through its environment.
    assert jobs[0].parameters(Path("/o")) == {
        "seed": jobs[0].seed,
        "layer": "service",
        "strategy": "atomic",
        "out_dir": "/o",
    }
    assert suite.plan_jobs(notebooks, ["two"], ("http",), "atomic", 5)[0].layer == "http"
    with pytest.raises(ValueError, match="no notebook for nope"):
        suite.plan_jobs(notebooks, ["nope"], suite.LAYERS, "atomic", 5)


def test_rerun_command_replays_layers_strategy_and_names() -> None:
    assert suite.rerun_command(None, ("service",), "row_lock", 7) == "coupon-chaos run all --seed 7"
    assert (
        suite.rerun_command(["flash_sale", "scale"], suite.LAYERS, "atomic", 7)
        == "coupon-chaos run flash_sale scale --layer both --strategy atomic --seed 7"
    )
    assert (
        suite.rerun_command(None, ("http",), "row_lock", 1)
        == "coupon-chaos run all --layer http --seed 1"
    )
    # A run on a database by URL: the command names the variable, never the URL.
    assert (
        suite.rerun_command(["double_dip"], ("service",), "row_lock", 2, by_url=True)
        == 'coupon-chaos run double_dip --database-url "$DATABASE_URL" --seed 2'
    )


def test_run_group_picks_the_catalog_or_the_faults_that_have_notebooks(tmp_path: Path) -> None:
    from experiments.commands import run as run_command
    from experiments.scenarios import CATALOG, FAULTS

    for name in (CATALOG[1], CATALOG[0], FAULTS[0], "detection"):
        write_notebook(tmp_path / f"{name}.ipynb")

    def chosen(*argv: str) -> list[str] | None:
        parser = argparse.ArgumentParser()
        run_command.add_arguments(parser)
        args = parser.parse_args([*argv, "--notebooks", str(tmp_path)])
        return run_command._chosen(args, suite.scenario_layers(tmp_path))

    assert chosen("all") is None  # every notebook, "detection" included
    with pytest.raises(UsageError, match="give SCENARIO names, all"):
        chosen()  # a bare run runs nothing
    assert chosen("--group", "catalog") == [CATALOG[0], CATALOG[1]]  # catalog order
    assert chosen("--group", "faults") == [FAULTS[0]]
    assert chosen(CATALOG[0]) == [CATALOG[0]]
    with pytest.raises(UsageError, match="unknown scenario 'nope'"):
        chosen("nope")
    with pytest.raises(UsageError, match="not both"):
        chosen(CATALOG[0], "--group", "catalog")
    (tmp_path / f"{FAULTS[0]}.ipynb").unlink()
    with pytest.raises(UsageError, match=r"no notebook .* for the faults group"):
        chosen("--group", "faults")


def test_list_groups_the_scenarios(capsys: pytest.CaptureFixture[str]) -> None:
    from experiments.scenarios import CATALOG, FAULTS

    assert main(["list"]) == 0
    printed = capsys.readouterr().out
    catalog, faults = printed.index("== catalog"), printed.index("== faults")
    assert catalog < faults
    for name in CATALOG:
        assert catalog < printed.index(f"\n{name}: ") < faults
    for name in FAULTS:
        assert printed.index(f"\n{name}: ") > faults


@pytest.mark.slow
def test_failed_assertion_and_crash_fail_the_run_and_are_named(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    write_notebook(notebooks / "good.ipynb", expect_ok=1)
    write_notebook(notebooks / "bad.ipynb", expect_ok=2)
    write_notebook(notebooks / "crash.ipynb", crash=True)
    out = tmp_path / "results"
    argv = ["run", "all", "--notebooks", str(notebooks), "--out", str(out)]
    code = main([*argv, "--database-url", db_url, "--seed", "11", "--jobs", "2", "--hide-code"])
    printed = capsys.readouterr().out

    assert code == 1
    assert "FAILED bad [service]" in printed
    assert "expected 2 successful claims, got 1" in printed
    assert "FAILED crash [service]: notebook: RuntimeError: the experiment crashed" in printed
    assert "FAILED good" not in printed

    run_dir = (out / "latest").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["seed"] == 11
    by_name = {s["name"]: s for s in summary["scenarios"]}
    assert [s["name"] for s in summary["scenarios"]] == ["bad", "crash", "good"]
    assert by_name["good"]["passed"] is True
    assert by_name["good"]["outcomes"] == {"claim": {"no_stock": 1, "ok": 1}}
    assert by_name["good"]["checks"] == [
        {"name": "database_answers", "passed": True, "detail": "SELECT 1 returned 1"}
    ]
    assert by_name["good"]["seed"] == suite.derive_seed(11, "good")
    bad_checks = [c for c in by_name["bad"]["checks"] if not c["passed"]]
    assert len(bad_checks) == 1
    assert bad_checks[0]["name"].startswith("cell [4] assert ok == expect_ok")
    assert bad_checks[0]["detail"] == "AssertionError: expected 2 successful claims, got 1"
    assert by_name["crash"]["passed"] is False
    assert by_name["crash"]["error"].startswith("RuntimeError: the experiment crashed")
    assert by_name["crash"]["outcomes"] == {}
    for entry in summary["scenarios"]:
        html = (run_dir / entry["html"]).read_text()
        assert 'src="http' not in html
        assert entry["timing"]["wall_s"] >= entry["timing"]["kernel_s"] > 0
        # The banner: verdict, seed and run at a glance, a way back to the index.
        verdict = "pass" if entry["passed"] else "FAIL"
        assert f'<span class="cc-verdict">{verdict}</span>' in html
        assert f"seed <b>{entry['seed']}</b>" in html
        assert f"run {summary['run_id']}" in html
        assert '<a href="index.html">' in html
        assert "hl-ipython3" in html  # the code is there...
        assert "psycopg" in html
        no_code = (run_dir / entry["html_no_code"]).read_text()
        assert "psycopg" not in no_code  # ...and really gone from the other one
        assert "hl-ipython3" not in no_code
        assert f'<span class="cc-verdict">{verdict}</span>' in no_code
    bad_page = (run_dir / by_name["bad"]["html"]).read_text()
    assert "expected 2 successful claims, got 1" in bad_page.split("</header>")[0]
    # The reader's version keeps the failed assertion's message, without its traceback.
    bad_text = (run_dir / by_name["bad"]["html_no_code"]).read_text().split("</header>")[1]
    assert "AssertionError: expected 2 successful claims, got 1" in bad_text
    assert "expect_ok" not in bad_text
    index = (run_dir / "index.html").read_text()
    assert index.count("<tr id=") == 3
    for fetched in ('src="http', "<script", "<link"):
        assert fetched not in index  # self-contained: nothing fetched, nothing run
    assert index.count('src="data:image/png;base64,') == 2  # the crash recorded no history
    assert '<span class="tag fail">FAIL</span>\n1 of 3 notebooks passed' in index
    assert '<a href="#bad-service">bad [service]</a>' in index
    # On a database by URL, the rerun reads it from the environment, never shows it.
    rerun = 'coupon-chaos run all --database-url "$DATABASE_URL" --seed 11'
    shown = rerun.replace('"', "&quot;")
    assert f"<code>{shown}</code>" in index
    assert summary["rerun"] == rerun
    # Every link of the index is relative and lands on a file of the run (or a row).
    links = re.findall(r'href="([^"]+)"', index)
    # report + without code per row, summary, 2 failures, and one grid tile per notebook
    assert len(links) == 3 * 2 + 1 + 2 + 3
    for link in links:
        if link.startswith("#"):
            assert f'id="{link[1:]}"' in index
        else:
            assert "://" not in link
            assert (run_dir / link).is_file(), link


def _assertions_notebook(path: Path, cells: list[str]) -> None:
    """A notebook that records no Result (like sweep or strategies): only assertion cells."""
    nb = _new_notebook(path)
    params = nbformat.v4.new_code_cell("seed = None\nlayer = 'service'\nstrategy = 'row_lock'")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)


@pytest.mark.chaos
def test_a_notebook_without_a_result_is_judged_by_its_assertion_cells(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _assertions_notebook(
        notebooks / "holds.ipynb",
        ["total = 2 + 2", "assert total == 4, total", "assert total > 3\nprint('fine')"],
    )
    _assertions_notebook(
        notebooks / "breaks.ipynb",
        ["assert 1 == 1", "assert 2 + 2 == 5, 'arithmetic'", "undefined_name", "assert True"],
    )
    out = tmp_path / "results"
    argv = ["run", "all", "--notebooks", str(notebooks), "--out", str(out), "--seed", "3"]
    code = main([*argv, "--database-url", db_url, "--hide-code"])
    printed = capsys.readouterr().out
    assert code == 1
    run_dir = (out / "latest").resolve()
    by_name = {
        s["name"]: s for s in json.loads((run_dir / "summary.json").read_text())["scenarios"]
    }
    holds = by_name["holds"]
    assert holds["passed"] is True
    assert [(c["name"], c["passed"]) for c in holds["checks"]] == [
        ("cell [4] assert total == 4, total", True),
        ("cell [5] assert total > 3", True),
    ]
    breaks = by_name["breaks"]
    assert breaks["passed"] is False
    # Counts include the parameters cell papermill injects. The error outside the
    # assertion cells is the notebook's error, listed first.
    assert [(c["name"], c["passed"]) for c in breaks["checks"]] == [
        ("notebook", False),
        ("cell [3] assert 1 == 1", True),
        ("cell [4] assert 2 + 2 == 5, 'arithmetic'", False),
        ("cell [6] assert True", True),
    ]
    assert breaks["checks"][2]["detail"] == "AssertionError: arithmetic"
    assert breaks["error"].startswith("NameError: name 'undefined_name' is not defined")
    assert "FAILED breaks [service]: notebook: NameError" in printed
    index = (run_dir / "index.html").read_text()
    assert "<td class=num>2 / 2" in index
    assert "<td class=num>2 / 4" in index


@pytest.mark.slow
@pytest.mark.chaos
def test_a_real_scenario_runs_end_to_end_on_both_layers(tmp_path: Path) -> None:
    # database_url=None: the suite provisions its own database (DATABASE_URL if set).
    report = suite.run_suite(
        ["double_dip"], layers=suite.LAYERS, seed=3, out=tmp_path, jobs=2, database_url=None
    )
    assert report.passed, [j.failures for j in report.jobs]
    assert (tmp_path / "latest").resolve() == report.run_dir
    summary = json.loads((report.run_dir / "summary.json").read_text())
    assert set(summary) >= {"run_id", "seed", "started_at", "duration_s", "scenarios"}
    assert summary["run_id"] == report.run_id
    assert [(s["name"], s["layer"]) for s in summary["scenarios"]] == [
        ("double_dip", "service"),
        ("double_dip", "http"),
    ]
    for entry in summary["scenarios"]:
        assert set(entry) >= {
            "name",
            "layer",
            "strategy",
            "seed",
            "passed",
            "duration_s",
            "outcomes",
            "checks",
            "html",
        }
        assert entry["outcomes"]["claim"] == {"already_claimed": 9, "ok": 1}
        assert {c["name"] for c in entry["checks"]} >= {"conservation", "claim_counts"}
        # The verdicts as the Result has them, without their figures (in its own file).
        extra = {"skipped", "validity"}
        assert all(
            {"name", "passed", "detail"} <= set(c) <= {"name", "passed", "detail", *extra}
            for c in entry["checks"]
        )
        assert entry["status"] == "pass"
        assert entry["timing"]["experiment_s"] > 0
        # Ten workers released by one barrier: they start within a bounded spread.
        assert 0 <= entry["start_spread_ms"] < 10_000
        html = (report.run_dir / entry["html"]).read_text()
        assert 'src="http' not in html
        assert "data:image/png;base64," in html
