"""The suite reads each notebook's Result: its status, its checks (not the cells restating
them), its attempts; a notebook past its run bound is stopped and the suite goes on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import nbformat as _nbformat
import pytest

from experiments import suite
from experiments.cli import main
from experiments.suite_html import index_html
from experiments.suite_report import JobReport, SuiteReport

nbformat: Any = _nbformat

_PARAMS = (
    'seed = None\nlayer = "service"\nstrategy = "row_lock"\ndatabase_url = None\nout_dir = None'
)

# A Result made by hand (no database needed): its verdicts and attempts are the case.
_RESULT = """from experiments.history import History, Op
from experiments.result import Attempt, Result, Verdict

history = History(origin_ns=0)
history.append(Op(0, 0, "claim", "c", invoke_ns=0, complete_ns=2_000_000, result="ok"))
verdicts = {verdicts}
result = Result(
    scenario="{name}", seed=seed, layer=layer, strategy=strategy, params={{}},
    history=history, verdicts=verdicts, attempts={attempts},
)"""

_RESTATE = 'check = result.verdict("{name}")\nassert check.passed or check.skipped, check.detail'
_FINAL = 'assert result.passed, f"failed checks: {[(v.name, v.detail) for v in result.failed]}"'
_RECORD = "if out_dir:\n    result.save(out_dir)"


def _notebook(path: Path, params: str, cells: list[str]) -> None:
    nb: Any = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["coupon_chaos"] = {"scenario": path.stem, "layers": ["service"]}
    first = nbformat.v4.new_code_cell(params)
    first.metadata["tags"] = ["parameters"]
    nb.cells = [first, *(nbformat.v4.new_code_cell(c) for c in cells)]
    nbformat.write(nb, path)


def _result_notebook(path: Path, verdicts: str, restated: list[str], attempts: str = "[]") -> None:
    made = _RESULT.format(verdicts=verdicts, attempts=attempts, name=path.stem)
    asserts = [_RESTATE.format(name=n) for n in restated]
    _notebook(path, _PARAMS, [made, *asserts, _FINAL, _RECORD])


def _serial(number: int, peak: int) -> str:
    v = (
        f'Verdict("stampede_collided", {peak >= 4}, "peak {peak} of 8",'
        f' {{"peak_in_flight": {peak}}}, validity=True)'
    )
    return (
        f'Attempt({number}, "p{number}", [Verdict("conservation", True, "held"), {v}],'
        f' {{"peak_in_flight": {peak}, "workers": 8}})'
    )


@pytest.mark.slow
@pytest.mark.chaos
def test_statuses_checks_attempts_and_a_notebook_past_its_bound(
    tmp_path: Path, db_url: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    # A lost update: two checks failed; four cells restate three checks, one the Result.
    _result_notebook(
        notebooks / "lost.ipynb",
        '[Verdict("conservation", True, "held"), Verdict("claim_rows", False, "9 rows, not 5"),'
        ' Verdict("linearizable", False, "no order explains op 3")]',
        ["conservation", "claim_rows", "linearizable"],
    )
    # A stampede that never collided, drawn three times: no experiment, never green.
    _result_notebook(
        notebooks / "serial.ipynb",
        '[Verdict("conservation", True, "held"), Verdict("stampede_collided", False,'
        ' "not a stampede: peak 1 of 8", {"peak_in_flight": 1}, validity=True)]',
        ["stampede_collided"],
        attempts=f"[{_serial(1, 1)}, {_serial(2, 2)}, {_serial(3, 1)}]",
    )
    # Against a target without its database: one check ran, two were skipped.
    _result_notebook(
        notebooks / "partial.ipynb",
        '[Verdict("conservation", True, "held"), Verdict.skip("final_stock", "no database"),'
        ' Verdict.skip("claim_rows", "no database")]',
        [],
    )
    # Hangs past its run bound (0.5 s) plus the margin: stopped, and the suite goes on.
    _notebook(
        notebooks / "hang.ipynb",
        f"{_PARAMS}\nrun_timeout_s = 0.5",
        ["import time\ntime.sleep(120)", "print('after the hang')"],
    )
    monkeypatch.setattr(suite.execute, "NOTEBOOK_MARGIN_S", 1.5)
    out = tmp_path / "results"
    argv = ["run", "all", "--notebooks", str(notebooks), "--out", str(out), "--seed", "5"]
    code = main([*argv, "--database-url", db_url])
    printed = capsys.readouterr().out

    assert code == 1
    run_dir = (out / "latest").resolve()
    summary = json.loads((run_dir / "summary.json").read_text())
    by_name = {s["name"]: s for s in summary["scenarios"]}
    assert summary["status"] == "FAIL"
    assert {n: s["status"] for n, s in by_name.items()} == {
        "hang": "FAIL",
        "lost": "FAIL",
        "partial": "pass",
        "serial": "no_experiment",
    }
    # The Result's checks are the denominator: the cells restating them add nothing.
    lost = by_name["lost"]
    assert [(c["name"], c["passed"]) for c in lost["checks"]] == [
        ("conservation", True),
        ("claim_rows", False),
        ("linearizable", False),
    ]
    assert printed.count("FAILED lost [service]") == 2
    assert "FAILED lost [service]: claim_rows: 9 rows, not 5" in printed
    assert "lost [service] FAILED in" in printed
    assert "serial [service] not an experiment in" in printed
    assert "partial [service] passed, 2 skipped in" in printed
    # The hung notebook: stopped at 3 x 0.5 s + 1.5 s, its row says so.
    hang = by_name["hang"]
    assert hang["error"] == "timed out after 3 s"
    assert "hang [service] started; stopped if still running after 3 s\n" in printed
    assert "lost [service] started\n" in printed  # no scenario, no bound of its own
    assert "FAILED hang [service]: notebook: timed out after 3 s" in printed
    executed = nbformat.read(run_dir / hang["notebook"], as_version=4)
    assert executed.cells[-1].get("outputs") == []  # the cell after the hang never ran
    # Each attempt set aside is shown, on the page and on the index row.
    assert [a["status"] for a in by_name["serial"]["attempts"]] == ["no_experiment"] * 3
    drawn = "drawn again 2x: peaks 1, 2 of 8"
    assert drawn in (run_dir / by_name["serial"]["html"]).read_text().split("</header>")[0]
    index = (run_dir / "index.html").read_text()
    row = index.split('<tr id="serial-service"')[1].split("</tr>")[0]
    assert drawn in row
    assert '<span class="tag no_experiment">not an experiment</span>' in row
    assert "<td class=num>1 / 2" in row
    assert "<td class=num>1 / 3" in index.split('<tr id="lost-service"')[1]
    assert "1 passed, 2 skipped" in (run_dir / by_name["partial"]["html"]).read_text()


def _job(name: str, checks: list[dict[str, Any]], skipped: str | None = None) -> JobReport:
    job = JobReport(name, "http", "row_lock", 1, checks=checks, skipped=skipped)
    job.status = "skipped" if skipped else "pass"
    job.passed = skipped is None
    return job


def test_a_run_that_skipped_nine_of_ten_scenarios_wears_no_green_badge(tmp_path: Path) -> None:
    ran = _job("flash_sale", [{"name": "conservation", "passed": True, "detail": "held"}])
    skipped = [
        _job(f"s{i}", [{"name": "runnable", "passed": None, "detail": "x", "skipped": True}], "x")
        for i in range(9)
    ]
    report = SuiteReport("r", tmp_path, 1, "t", 1.0, [ran, *skipped])
    page = index_html(report)
    banner = page.split('<div class="banner')[1].split("</p>")[0]
    assert "tag pass" not in banner
    assert "1 passed, 9 skipped" in banner
    assert report.to_dict()["status"] == "pass"
    assert report.to_dict()["passed"] is True
    assert [j["status"] for j in report.to_dict()["scenarios"]] == ["pass", *["skipped"] * 9]


def test_a_run_whose_stampede_never_collided_is_not_passed(tmp_path: Path) -> None:
    ran = _job("flash_sale", [{"name": "conservation", "passed": True, "detail": "held"}])
    serial = _job("double_dip", [{"name": "stampede_collided", "passed": False, "detail": "x"}])
    serial.status, serial.passed = "no_experiment", False
    report = SuiteReport("r", tmp_path, 1, "t", 1.0, [ran, serial])
    assert (report.passed, report.status, report.label) == (
        False,
        "no_experiment",
        "not an experiment",
    )
    page = index_html(report)
    assert (
        '<span class="tag no_experiment">not an experiment</span>\n1 of 2 notebooks passed' in page
    )


def _executed(*cells: tuple[str, str | None]) -> Any:
    """An executed notebook: (source, error name or None) per code cell."""
    nb: Any = nbformat.v4.new_notebook()
    for i, (source, error) in enumerate(cells, start=1):
        cell = nbformat.v4.new_code_cell(source, execution_count=i)
        if error is not None:
            cell.outputs = [nbformat.v4.new_output("error", ename=error, evalue="e", traceback=[])]
        nb.cells.append(cell)
    return nb


def test_judge_reads_the_result_and_counts_an_assertion_only_where_it_says_more() -> None:
    from experiments.history import History
    from experiments.result import Result, Verdict
    from experiments.suite import judge

    def result(*verdicts: Verdict) -> Result:
        return Result("s", 1, "http", "row_lock", {}, History(), list(verdicts))

    def judged(res: Result, nb: Any) -> JobReport:
        report = JobReport("s", "http", "row_lock", 1)
        judge.judge(report, nb, res, records=True, crash=None)
        return report

    echoes = _executed(
        ("assert check.passed", "AssertionError"), ("assert r.passed", "AssertionError")
    )
    failed = judged(result(Verdict("a", True, "d"), Verdict("b", False, "d")), echoes)
    assert (failed.status, [c["name"] for c in failed.checks]) == ("FAIL", ["a", "b"])
    # The checks passed, yet the notebook's own expectation did not: it fails, named.
    more = judged(result(Verdict("a", True, "d")), _executed(("assert n == 2", "AssertionError")))
    assert more.status == "FAIL"
    assert [c["name"] for c in more.checks] == ["a", "cell [1] assert n == 2"]
    # A crash outside the assertion cells comes first, whatever the Result says.
    crashed = judged(result(Verdict("a", True, "d")), _executed(("chart()", "ValueError")))
    assert (crashed.status, crashed.checks[0]["name"]) == ("FAIL", "notebook")
    # A scenario that skipped itself (a target it cannot serve): skipped, with the reason.
    skipped = judged(result(Verdict.skip("runnable", "needs the service")), _executed())
    assert (skipped.status, skipped.skipped) == ("skipped", "skipped: needs the service")
    assert not skipped.passed
