"""The detection matrix on the real database: cells, retry policy, and its text forms."""

from __future__ import annotations

import pytest

from experiments.detection import (
    ATTEMPT_STRIDE,
    Cell,
    controls,
    matrix_table,
    mutant_summary,
    run_cell,
)
from experiments.mutants import MUTANTS, Mutant, mutant


def test_controls_are_the_real_strategies_only() -> None:
    from coupon_core import available_strategies

    rows = controls()
    assert [m.strategy for m in rows] == available_strategies()
    assert all(m.name.startswith("real:") and m.equivalent is None for m in rows)
    assert not any(m.strategy.startswith("mutant:") for m in rows)


def test_an_undecided_cell_is_never_caught_missed_equivalent_or_passed() -> None:
    from experiments.detection import _status
    from experiments.history import History
    from experiments.mutants import mutant
    from experiments.result import Result, Verdict

    def run(*verdicts: Verdict) -> Result:
        return Result("flash_sale", 1, "service", "x", {}, History(), list(verdicts))

    unknown = run(Verdict("conservation", True, ""), Verdict("linearizable", None, "bound"))
    serial = run(
        Verdict("conservation", True, ""),
        Verdict("stampede_collided", False, "not a stampede", validity=True),
    )
    equivalent, killable = mutant("lock_after_check"), mutant("lost_update")
    real = Mutant("real:atomic", "atomic", "none: the real strategy")
    for m in (equivalent, killable, real):
        assert _status(m, unknown) == "unknown"
        assert _status(m, serial) == "no_experiment"
    cells = [
        Cell("lock_after_check", "flash_sale", "equivalent"),
        Cell("lock_after_check", "double_dip", "unknown", ["linearizable"]),
        Cell("real:row_lock", "flash_sale", "pass"),
        Cell("real:row_lock", "double_dip", "no_experiment", ["stampede_collided"]),
    ]
    assert mutant_summary(cells) == {
        "lock_after_check": "unknown",
        "real:row_lock": "no_experiment",
    }


def test_table_and_summary_from_cells() -> None:
    cells = [
        Cell("lost_update", "flash_sale", "caught", ["conservation", "linearizable"]),
        Cell("lost_update", "double_dip", "missed"),
        Cell("no_check+row_lock", "flash_sale", "equivalent"),
        Cell("no_check+row_lock", "double_dip", "equivalent"),
        Cell("swallow_unique", "flash_sale", "missed"),
        Cell("swallow_unique", "double_dip", "unknown", ["linearizable"]),
        Cell("real:atomic", "flash_sale", "pass"),
        Cell("real:atomic", "double_dip", "FAIL", ["claim_counts"]),
    ]
    table = matrix_table(cells)
    assert table[0] == ["mutant", "flash_sale", "double_dip"]
    assert table[1] == ["lost_update", "caught (conservation+)", "missed"]
    assert table[4] == ["real:atomic", "pass", "FAIL (claim_counts)"]
    assert mutant_summary(cells) == {
        "lost_update": "caught",
        "no_check+row_lock": "equivalent",
        # An unknown cell is never a catch, and never a miss either.
        "swallow_unique": "unknown",
        "real:atomic": "FAIL",
    }


@pytest.mark.chaos
def test_real_strategy_cell_passes_with_the_check_of_its_history(db_url: str) -> None:
    real = next(m for m in controls() if m.strategy == "row_lock")
    cell = run_cell(real, "double_dip", db_url, seed=5, attempts=4)
    assert cell.status == "pass", cell.by
    assert cell.attempts == 1  # a real strategy is never retried
    assert cell.seed == 5


@pytest.mark.chaos
def test_killable_mutant_is_caught_with_a_witness(db_url: str) -> None:
    # Stock 1, 100 distinct users: the stale decrement shows on the first stampede
    # measured (the schema has no CHECK to stop it).
    cell = run_cell(
        mutant("no_check+lock_after_check"), "zero_stock_stampede", db_url, seed=3, attempts=5
    )
    assert cell.status == "caught"
    assert "linearizable" in cell.by
    assert "no_negative_stock" in cell.by or "claim_counts" in cell.by
    assert cell.witness_op_ids
    assert cell.seed in {3 + k * ATTEMPT_STRIDE for k in range(5)}


@pytest.mark.chaos
def test_equivalent_mutant_is_run_once_and_shows_nothing(db_url: str) -> None:
    m = mutant("no_unique+row_lock")
    assert m.equivalent
    cell = run_cell(m, "constraint_storm", db_url, seed=1, attempts=5)
    assert cell.status == "equivalent", cell.by
    assert cell.attempts == 1


@pytest.mark.chaos
def test_scale_through_the_pipeline_catches_a_lost_update(db_url: str) -> None:
    # scale goes through the one pipeline like every scenario, linearizability included,
    # and a mutant's lost update on its hot coupons shows there.
    cell = run_cell(
        mutant("lost_update"),
        "scale",
        db_url,
        seed=2,
        attempts=5,
        params={"sizes": (40,), "stock_ratio": 0.1},
    )
    assert cell.status == "caught", cell.by
    assert "linearizable" in cell.by


@pytest.mark.chaos
def test_missed_cell_is_retried_with_fresh_seeds(db_url: str) -> None:
    # swallow_unique needs one user claiming twice: a stampede of distinct users on
    # stock 1 never shows it, so every attempt runs and the cell is missed.
    cell = run_cell(mutant("swallow_unique"), "zero_stock_stampede", db_url, seed=9, attempts=3)
    assert cell.status == "missed", cell.by
    assert cell.attempts == 3
    assert cell.seed == 9 + 2 * ATTEMPT_STRIDE


def test_every_killable_mutant_has_a_bug_and_no_equivalence() -> None:
    killable = [m for m in MUTANTS if m.equivalent is None]
    assert len(killable) == 7
    assert all(m.bug for m in killable)
