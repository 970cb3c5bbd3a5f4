"""Sweeps: tallies and exit codes; the grid of runs into tidy tables, against the real database."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from experiments import sweep_tables
from experiments.sweep import (
    REAL_STRATEGIES,
    Sweep,
    Tally,
    check_params,
    exit_code,
    expand_strategies,
    print_totals,
    run_sweep,
)


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


# -- run_sweep: the grid into tidy tables ----------------------------------------------------


def test_a_run_that_tested_nothing_or_could_not_decide_is_never_a_pass() -> None:
    from experiments.history import History
    from experiments.result import Result, Verdict

    def result(*verdicts: Verdict) -> Result:
        return Result("double_dip", 1, "service", "row_lock", {}, History(), list(verdicts))

    serial = Verdict("stampede_collided", False, "not a stampede: peak 1 of 8", validity=True)
    for r, status in (
        (result(Verdict("conservation", True, ""), serial), "no_experiment"),
        (result(Verdict("linearizable", None, "past its bound")), "unknown"),
    ):
        tally = Tally()
        tally._count(1, r)
        assert (tally.passed, tally.failed) == (0, 1)
        assert tally.failures[0].startswith(f"seed 1: {status}: ")
        assert exit_code({("double_dip",): tally}) == 1


def test_strategy_names_expand_and_unknown_ones_are_refused() -> None:
    assert expand_strategies(["all"]) == list(REAL_STRATEGIES)
    assert expand_strategies(["atomic", "all"])[0] == "atomic"
    mutants = expand_strategies(["mutants"])
    assert "lost_update" in mutants
    assert not set(mutants) & set(REAL_STRATEGIES)
    with pytest.raises(ValueError, match="unknown strategy 'rowlock'"):
        expand_strategies(["rowlock"])
    with pytest.raises(ValueError, match="no strategy"):
        expand_strategies([])


def test_bad_scenarios_and_parameters_are_refused_before_anything_runs() -> None:
    with pytest.raises(ValueError, match="unknown scenario"):
        run_sweep(["no_such"], seeds=1, database_url="postgresql://unused@127.0.0.1:1/x")
    with pytest.raises(ValueError, match="'requests' is not one of flash_sale"):
        check_params(["double_dip", "flash_sale"], {"requests": 3})
    with pytest.raises(ValueError, match="own option"):
        check_params(["flash_sale"], {"seed": 3})
    with pytest.raises(ValueError, match="seeds must be at least 1"):
        run_sweep(["flash_sale"], seeds=0)
    with pytest.raises(ValueError, match="unknown layer"):
        run_sweep(["flash_sale"], seeds=1, layers=["grpc"])


@pytest.fixture(scope="module")
def small_sweep(db_url: str) -> Sweep:
    """flash_sale (10 users, stock 2) x every real strategy x 2 seeds, service layer."""
    return run_sweep(
        ["flash_sale"],
        seeds=2,
        first_seed=11,
        strategies=["all"],
        layers=["service"],
        params={"users": 10, "stock": 2},
        database_url=db_url,
    )


@pytest.mark.chaos
def test_a_sweep_has_one_row_per_run_op_and_check(small_sweep: Sweep) -> None:
    runs = small_sweep.runs
    assert len(runs) == len(REAL_STRATEGIES) * 2
    assert sorted(set(runs["strategy"])) == sorted(REAL_STRATEGIES)
    assert sorted(set(runs["seed"])) == [11, 12]
    # A stampede that did not collide (atomic, with the CPU busy) is no experiment:
    # recorded as such, never as a pass or a FAIL.
    assert runs["status"].isin(["pass", "no_experiment"]).all(), runs[["strategy", "failed_checks"]]
    assert (runs["status"] == "pass").any()
    assert (runs["claim_ok"] == 2).all()
    assert (runs["claim_no_stock"] == 8).all()
    assert (runs["claims"] == 10).all()
    assert (runs["peak_in_flight"] >= 1).all()
    assert runs[["throughput_ops_s", "p50_ms", "p99_ms", "start_spread_ms"]].notna().all().all()
    # Every run's ops (10 claims and the setup create) and every check, one row each.
    assert len(small_sweep.ops) == len(REAL_STRATEGIES) * 2 * 11
    assert set(small_sweep.ops["phase"]) == {"setup", "load"}
    checks = small_sweep.checks
    assert len(checks) == len(checks.drop_duplicates(["strategy", "seed", "check"]))
    assert {"conservation", "linearizable", "claim_counts"} <= set(checks["check"])


@pytest.mark.chaos
def test_retries_are_counted_for_serializable_only_and_lock_waits_sampled(
    small_sweep: Sweep,
) -> None:
    runs = small_sweep.runs.set_index(["strategy", "seed"])
    assert runs.loc["serializable", "retries"].notna().all()
    assert (runs.loc["serializable", "retries"] >= 0).all()
    others = runs.drop(index="serializable", level="strategy")
    assert others["retries"].isna().all()
    assert runs["lock_sampler_error"].isna().all()
    assert (runs["lock_samples"] > 0).all()
    assert (runs["lock_wait_ms"] >= 0).all()


@pytest.mark.chaos
def test_tables_round_trip_through_csv(small_sweep: Sweep, tmp_path: Path) -> None:
    folder = sweep_tables.save(small_sweep, tmp_path / "t")
    back = sweep_tables.load(folder)
    assert back.runs.shape == small_sweep.runs.shape
    assert back.ops.shape == small_sweep.ops.shape
    assert back.meta["seeds"] == 2
    assert list(back.runs["claim_ok"]) == list(small_sweep.runs["claim_ok"])
    with pytest.raises(FileNotFoundError, match="not a sweep's folder"):
        sweep_tables.load(tmp_path)


@pytest.mark.chaos
def test_runs_past_the_sweep_budget_are_recorded_skipped(db_url: str) -> None:
    sweep = run_sweep(
        ["double_dip"], seeds=2, strategies=["atomic"], database_url=db_url, budget_s=1e-9
    )
    assert list(sweep.runs["status"]) == ["skipped", "skipped"]
    assert sweep.ops.empty


@pytest.mark.chaos
def test_a_mutant_runs_on_its_own_schema_and_is_labelled(db_url: str) -> None:
    sweep = run_sweep(
        ["double_dip"],
        seeds=1,
        strategies=["no_unique+row_lock"],
        params={"requests": 5},
        database_url=db_url,
    )
    (row,) = sweep.runs.to_dict("records")
    assert row["kind"] == "mutant"
    assert row["equivalent"]  # the row lock serialises claims: nothing to see
    assert row["status"] == "pass", row
