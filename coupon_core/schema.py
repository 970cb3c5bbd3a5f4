"""The database schema of the coupon service, applied idempotently."""

from __future__ import annotations

import psycopg

__all__ = ["SCHEMA_SQL", "apply_schema"]

# Exactly the contract: outside clients insert rows with plain SQL, so nothing here
# may need a value they would not give.
SCHEMA_SQL = """
CREATE TABLE IF NOT EXISTS coupons (
    name VARCHAR(255) PRIMARY KEY,
    amount INTEGER NOT NULL CHECK (amount > 0),
    remaining_amount INTEGER NOT NULL CHECK (remaining_amount >= 0),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW()
);
CREATE TABLE IF NOT EXISTS claims (
    id SERIAL PRIMARY KEY,
    user_id VARCHAR(255) NOT NULL,
    coupon_name VARCHAR(255) NOT NULL REFERENCES coupons(name),
    created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
    UNIQUE(user_id, coupon_name)
);
CREATE INDEX IF NOT EXISTS idx_claims_coupon_name ON claims(coupon_name);
CREATE INDEX IF NOT EXISTS idx_claims_user_id ON claims(user_id);
"""

# Concurrent first starts (several servers, notebooks run in parallel) would race on
# CREATE TABLE IF NOT EXISTS, which is not atomic in PostgreSQL; one advisory lock
# serialises them.
_SCHEMA_LOCK = 0x636F75706F6E  # "coupon"


def apply_schema(url: str) -> None:
    """Create the tables and indexes if they are missing; safe to call any number of times."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute(SCHEMA_SQL)
