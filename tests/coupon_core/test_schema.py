"""apply_schema: idempotent, and on a present schema it waits for no claim in flight."""

from __future__ import annotations

import threading

import psycopg

from coupon_core import apply_schema


def test_a_present_schema_is_applied_beside_claims_in_flight(db_url: str) -> None:
    apply_schema(db_url)
    # A claim in flight holds ROW EXCLUSIVE on coupons and claims; the old DDL queued
    # behind it (ALTER TABLE wants ACCESS EXCLUSIVE) until the claim ended.
    with psycopg.connect(db_url) as busy:
        busy.execute("LOCK TABLE coupons, claims IN ROW EXCLUSIVE MODE")
        errors: list[BaseException] = []

        def apply() -> None:
            try:
                apply_schema(db_url)
            except BaseException as err:
                errors.append(err)

        t = threading.Thread(target=apply)
        t.start()
        t.join(10)
        alive = t.is_alive()
        busy.rollback()
        t.join(10)
    assert not alive, "apply_schema waited for a transaction holding coupons and claims"
    assert errors == []


def test_a_missing_index_is_made_again(db_url: str) -> None:
    apply_schema(db_url)
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute("DROP INDEX idx_claims_user_id")
        apply_schema(db_url)
        found = conn.execute("SELECT to_regclass('idx_claims_user_id') IS NOT NULL").fetchone()
    assert found == (True,)
