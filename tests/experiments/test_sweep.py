"""Sweep tallies: passes, failures with reasons, skips past the budget, exit codes."""

from __future__ import annotations

import time

import pytest

from experiments.sweep import Tally, exit_code, print_totals


@pytest.mark.chaos
def test_a_passing_run_counts_as_a_pass(db_url: str) -> None:
    tally = Tally()
    result = tally.run(
        "double_dip", 3, deadline=time.monotonic() + 60, database_url=db_url, requests=4
    )
    assert result is not None
    assert result.passed, [v.detail for v in result.failed]
    assert (tally.passed, tally.failed, tally.skipped) == (1, 0, 0)
    assert tally.seconds > 0
    assert exit_code({("double_dip",): tally}) == 0


def test_a_crash_is_a_failure_with_its_reason() -> None:
    tally = Tally()
    assert tally.run("no_such_scenario", 1, deadline=time.monotonic() + 60) is None
    assert (tally.passed, tally.failed) == (0, 1)
    assert "crashed: KeyError" in tally.failures[0]
    assert exit_code({("x",): tally}) == 1


def test_runs_past_the_budget_are_skipped_never_passed(capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally()
    assert tally.run("double_dip", 1, deadline=time.monotonic() - 1) is None
    assert (tally.passed, tally.failed, tally.skipped) == (0, 0, 1)
    assert print_totals({("double_dip", "service"): tally}, 0.5) == 2
    assert "0 passed, 0 failed, 1 skipped" in capsys.readouterr().out


def test_failures_are_printed_with_their_cell(capsys: pytest.CaptureFixture[str]) -> None:
    tally = Tally(failed=1, failures=["seed 7: conservation: FAIL: c0 off by one"])
    assert print_totals({("flash_sale", "http", "atomic"): tally}, 1.0) == 1
    out = capsys.readouterr().out
    assert "FAIL flash_sale http atomic seed 7: conservation" in out
