"""One definition of each figure (experiments.figures): every place that shows it agrees.

Each test is built from the input that made two places disagree (issue 25, point 5): a
flash sale's history (one setup create, then 5 ok claims and 45 no_stock), summarised the
way the pipeline summarises it (``lab.load_figures``), then read off the summary table,
the ECDF legend, the verdict table, the console line and the index.
"""

from __future__ import annotations

import re
import statistics
from typing import Any

import pytest

from experiments import figures, report
from experiments.figures import load_figures
from experiments.history import History
from experiments.result import Result, Verdict
from experiments.runner import RunReport
from tests.histories import history, op, setup_create


def _flash_sale_history() -> History:
    """A setup create of 1 ms, then 5 ok claims (20..24 ms) and 45 no_stock (100..144 ms)."""
    ops = [setup_create(amount=5, t1=1)]
    for i in range(50):
        ok = i < 5
        latency = (20 + i) if ok else (100 + i)
        result = "ok" if ok else "no_stock"
        ops.append(op(i, "claim", 2, 2 + latency, result, f"u{i}", phase="load"))
    return history(*ops)


def _result(history: History, verdicts: list[Verdict] | None = None) -> Result:
    run = RunReport(
        workers=50, ops_planned=50, ops_run=50, not_started=0, wall_s=0.2,
        start_spread_ms=1.0, timed_out=False,
    )  # fmt: skip
    return Result(
        scenario="flash_sale", seed=7, layer="service", strategy="row_lock", params={},
        history=history, verdicts=verdicts or [Verdict("conservation", True, "fine")],
        summary=load_figures(history, run),
    )  # fmt: skip


def _legend(fig: object) -> dict[str, str]:
    ax = fig.axes[0]  # type: ignore[attr-defined]
    return {t.get_text().split(" ")[0]: t.get_text() for t in ax.get_legend().get_texts()}


def _rows(table: object) -> dict[str, str]:
    return {str(k): str(v) for k, v in table["value"].items()}  # type: ignore[index]


def test_the_ecdf_ok_curve_counts_what_the_summary_counts() -> None:
    """The legend's ``ok`` mixed the setup create with the claims: n=6 beside the table's 5."""
    result = _result(_flash_sale_history())
    legend = _legend(report.latency_ecdf(result))
    ok = result.summary["latency_ok"]
    assert "n=5;" in legend["ok"], legend["ok"]
    # The same quantile, taken the same way, printed the same way.
    assert f"p50 {figures.ms(ok['p50_ms'])}" in legend["ok"], (legend["ok"], ok)
    assert f"p99 {figures.ms(ok['p99_ms'])}" in legend["ok"]
    rows = _rows(report.summary_table(result))
    assert rows["latency (ok load ops) p50_ms"] == f"{ok['p50_ms']:.4g}"
    assert figures.ms(ok["p50_ms"]) == f"{rows['latency (ok load ops) p50_ms']} ms"
    # The setup op stays available on request.
    assert "n=6;" in _legend(report.latency_ecdf(result, setup=True))["ok"]


def test_quantiles_are_the_summarys_method() -> None:
    """One method: linear between ranks (statistics' inclusive), not the ECDF's inverted CDF."""
    values = [1.0, 2.0, 3.0, 10.0]
    for q in (0.5, 0.9, 0.99):
        expected = statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]
        assert figures.quantile(values, q) == pytest.approx(expected)
    assert figures.quantile([], 0.5) is None
    assert figures.quantile([4.0], 0.99) == 4.0
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        figures.quantile(values, 1.5)


def test_operations_and_ops_say_which_ops_they_count() -> None:
    """``operations 51`` stood beside ``ops 50`` with nothing saying why."""
    result = _result(_flash_sale_history())
    rows = _rows(report.summary_table(result))
    assert result.summary["ops"] == 50
    assert rows["operations"] == "51 (1 setup, 50 load)"
    assert rows["load ops"] == "50"
    assert "ops" not in rows
    # The load count inside "operations" is the summary's "ops".
    found = re.search(r"(\d+) load", rows["operations"])
    assert found is not None
    assert int(found.group(1)) == result.summary["ops"]


def test_a_setup_op_in_a_witness_is_explained() -> None:
    """A witness named op ``-1`` with no word on what it was."""
    history = _flash_sale_history()
    verdict = Verdict("linearizable", False, "no order", {"witness_op_ids": [-1, 7]})
    table = report.verdict_table(_result(history, [verdict]))
    text = str(table.loc[0, "figures"])
    assert "-1 (setup op 1: the lab created this coupon before the load" in text, text
    assert "create c -> ok" in text
    assert figures.op_text(7, history.ops) == "op 7 (claim u7 c -> no_stock)"


def test_the_run_words_never_count_a_skip_as_a_failure() -> None:
    words = figures.run_words(["pass", *["skipped"] * 9])
    assert words == "1 of 10 passed, 9 skipped (not run)"
    assert "failed" not in words
    assert figures.run_words(["pass", "FAIL", "unknown"]) == ("1 of 3 passed, 1 failed, 1 unknown")


def test_passed_with_skipped_checks_says_how_many() -> None:
    checks = [{"passed": True}] * 9 + [{"passed": None, "skipped": True}] * 7
    assert figures.check_words("passed", checks) == "passed, 7 skipped"
    assert figures.check_counts(checks) == {
        "checks": 16, "passed": 9, "failed": 0, "unknown": 0, "skipped": 7,
    }  # fmt: skip


def test_a_run_whose_notebooks_skipped_checks_is_not_green(tmp_path: Any) -> None:
    """A target run, 7 of 16 checks skipped in each notebook: the index said a green pass
    and the console ``7 of 7 passed``."""
    from experiments.suite_html import index_html
    from experiments.suite_report import JobReport, SuiteReport

    checks = [{"name": f"c{i}", "passed": True, "detail": "ok"} for i in range(9)]
    checks += [{"name": f"s{i}", "passed": None, "detail": "x", "skipped": True} for i in range(7)]
    job = JobReport("flash_sale", "http", "row_lock", 1, passed=True, status="pass")
    job.checks = checks
    suite = SuiteReport("r", tmp_path, 1, "t", 1.0, [job])
    assert (suite.status, suite.badge) == ("pass", "partial")
    assert suite.label == "1 passed, 7 checks skipped"
    assert suite.words == "1 of 1 passed, 7 checks skipped"
    banner = index_html(suite).split('<div class="banner')[1].split("</p>")[0]
    assert "tag pass" not in banner
    assert "7 checks skipped" in banner
