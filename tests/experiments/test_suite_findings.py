"""A finding reaches the suite's report as a finding, never printed as a failure."""

from __future__ import annotations

from experiments.commands import run as run_command
from experiments.history import History
from experiments.result import Result, Verdict
from experiments.suite.judge import judge
from experiments.suite_report import JobReport


def _judged(*verdicts: Verdict) -> JobReport:
    result = Result("isolation", 1, "service", "row_lock", {}, History(), list(verdicts))
    report = JobReport("isolation", "service", "row_lock", 1)
    judge(report, None, result, records=True, crash=None)
    return report


def test_a_finding_is_named_a_finding_and_a_failure_beside_it_a_failure() -> None:
    # Before: the report's checks dropped `finding`, so a passing isolation run printed its
    # expected anomalies as "FAILED isolation [...]" lines.
    caught = Verdict("campaign/naive/read_committed", False, "G2-item in 3 of 3 seeds")
    caught.finding = "G2-item caught in 3 of 3 seeds"
    broken = Verdict("campaign/naive/serializable", False, "G2-item in 1 of 3 seeds")
    report = _judged(caught, broken)
    checks = {c["name"]: c for c in report.checks}
    assert checks["campaign/naive/read_committed"]["finding"] == caught.finding
    assert "finding" not in checks["campaign/naive/serializable"]
    prefix = run_command._prefix
    assert prefix(checks["campaign/naive/read_committed"]) == "FINDING"
    assert prefix(checks["campaign/naive/serializable"]) == "FAILED"
    assert report.status == "FAIL"  # the finding excuses nothing else


def test_a_run_whose_only_failed_check_is_a_finding_passes() -> None:
    caught = Verdict("dashboard/per_statement/read_committed", False, "G-single in 3 of 3")
    caught.finding = "G-single caught in 3 of 3 seeds"
    report = _judged(caught, Verdict("campaign/naive/serializable", True, "no anomaly"))
    assert report.status == "pass"
    assert [run_command._prefix(c) for c in report.failures] == ["FINDING"]
