"""Mutants on the real database: each real bug shows in a bounded stampede and is flagged."""

from __future__ import annotations

import psycopg
import pytest

from coupon_core import apply_schema, available_strategies
from experiments.exposure import expose
from experiments.mutants import MUTANTS, Mutant, install, mutant, mutant_database

_KILLABLE = [m.name for m in MUTANTS if m.equivalent is None]
_EQUIVALENT = [m.name for m in MUTANTS if m.equivalent is not None]


@pytest.mark.parametrize("name", _KILLABLE)
def test_mutant_bug_shows_and_is_flagged(db_url: str, name: str) -> None:
    m = mutant(name)
    exposure = expose(m, db_url, attempts=10)
    assert exposure.shown, f"{name}: not shown in {exposure.attempts} stampedes"
    assert exposure.evidence, exposure.figures
    assert exposure.attempts <= 10
    if m.safety:
        assert exposure.linearizable.passed is False, exposure.linearizable.detail
        witness = exposure.linearizable.figures["witness_op_ids"]
        ids = {o.op_id for o in exposure.history.ops}
        assert witness
        assert set(witness) <= ids
    else:
        # Refusing under contention is a liveness bug: an unavailable answer may mean
        # "did not happen", so the history stays linearizable and the counts catch it.
        assert exposure.linearizable.passed is True
        assert "no_server_errors" in exposure.figures["failed"], exposure.evidence
        assert any("unavailable" in e for e in exposure.evidence)


@pytest.mark.parametrize("name", _EQUIVALENT)
def test_equivalent_mutant_shows_nothing(db_url: str, name: str) -> None:
    m = mutant(name)
    assert m.equivalent
    exposure = expose(m, db_url, attempts=3)
    # Not shown means passed: an unknown verdict is neither shown nor a pass.
    assert exposure.status == "pass", exposure.evidence
    assert exposure.symptoms == []
    assert exposure.linearizable.passed is True, exposure.linearizable.detail


@pytest.mark.parametrize("strategy", available_strategies())
@pytest.mark.parametrize(("stampede", "stock"), [("users", 1), ("one_user", 100)])
def test_real_strategies_show_nothing(
    db_url: str, strategy: str, stampede: str, stock: int
) -> None:
    control = Mutant(f"control-{strategy}", strategy, "none", stampede=stampede, stock=stock)
    exposure = expose(control, db_url, attempts=2)
    # Not shown means passed: an unknown verdict is neither shown nor a pass.
    assert exposure.status == "pass", exposure.evidence
    assert exposure.symptoms == []
    assert exposure.linearizable.passed is True, exposure.linearizable.detail


@pytest.mark.parametrize(
    ("schema", "unique", "stock_check"), [("no_unique", False, True), ("no_check", True, False)]
)
def test_schema_mutant_lives_in_its_own_database(
    db_url: str, schema: str, unique: bool, stock_check: bool
) -> None:
    url = mutant_database(db_url, schema)
    assert mutant_database(db_url, schema) == url  # idempotent
    with psycopg.connect(url) as conn:
        assert conn.info.dbname == f"coupon_mutant_{schema}"
        kinds = conn.execute(
            "SELECT contype, pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid IN ('coupons'::regclass, 'claims'::regclass)"
        ).fetchall()
    defs = {d for _, d in kinds}
    assert ("UNIQUE (user_id, coupon_name)" in defs) is unique
    assert ("CHECK ((remaining_amount >= 0))" in defs) is stock_check
    assert "CHECK ((amount > 0))" in defs
    # The shared database keeps the contract's constraints.
    apply_schema(db_url)
    with psycopg.connect(db_url) as conn:
        rows = conn.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint"
            " WHERE conrelid IN ('coupons'::regclass, 'claims'::regclass)"
        ).fetchall()
    shared = {r[0] for r in rows}
    assert "UNIQUE (user_id, coupon_name)" in shared
    assert "CHECK ((remaining_amount >= 0))" in shared


def test_install_registers_mutants_once() -> None:
    names = install()
    assert install() == names
    registered = available_strategies(include_registered=True)
    assert set(names) <= set(registered)
    assert not set(names) & set(available_strategies())
