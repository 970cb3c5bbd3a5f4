"""The database schema of the coupon service, applied idempotently."""

from __future__ import annotations

import psycopg

__all__ = ["MULTIROW_SQL", "SCHEMA_SQL", "apply_schema"]

# The multi-row rules (docs/multirow.md), additive: a column with a default on coupons
# (NULL: in no campaign), and a table only the service writes. Why a table of its own
# and not a trigger-filled ``claims.campaign`` under a partial UNIQUE: a constraint on
# ``claims`` would bind every claim path, so the naive campaign strategies kept to show
# write skew could never show it, and adding it to a database whose rows already break
# the rule would fail the schema; here a plain-SQL ``INSERT INTO claims (user_id,
# coupon_name)`` works as before. The foreign key to the claim (``ON DELETE CASCADE``)
# ties each slot to the claim that took it: deleting a claim (the lab's clean-up)
# frees the slot and never fails on it.
MULTIROW_SQL = """
ALTER TABLE coupons ADD COLUMN IF NOT EXISTS campaign VARCHAR(255) DEFAULT NULL;
CREATE TABLE IF NOT EXISTS campaign_claims (
    campaign VARCHAR(255) NOT NULL,
    user_id VARCHAR(255) NOT NULL,
    coupon_name VARCHAR(255) NOT NULL,
    PRIMARY KEY (campaign, user_id),
    FOREIGN KEY (user_id, coupon_name) REFERENCES claims(user_id, coupon_name)
        ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS idx_coupons_campaign ON coupons(campaign)
    WHERE campaign IS NOT NULL;
"""

# Exactly the contract: outside clients insert rows with plain SQL, so nothing here
# may need a value they would not give.
SCHEMA_SQL = (
    """
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
    + MULTIROW_SQL
)

# Concurrent first starts (several servers, notebooks run in parallel) would race on
# CREATE TABLE IF NOT EXISTS, which is not atomic in PostgreSQL; one advisory lock
# serialises them.
_SCHEMA_LOCK = 0x636F75706F6E  # "coupon"


# Every object SCHEMA_SQL makes, looked up in the catalog without locking a table. The
# DDL itself locks even when it changes nothing (ALTER TABLE takes ACCESS EXCLUSIVE on
# coupons, CREATE INDEX IF NOT EXISTS a SHARE lock on claims): run while claims are in
# flight (a service connecting beside another's workload: `run isolation --layer both`
# runs its two notebooks on one database) it queued behind them and deadlocked with a
# claim that held coupons and wanted claims (seen: DeadlockDetected, the service's
# "cannot reach the database"). A schema already there is left alone.
_PRESENT_SQL = """
SELECT to_regclass('coupons') IS NOT NULL AND to_regclass('claims') IS NOT NULL
   AND to_regclass('campaign_claims') IS NOT NULL
   AND to_regclass('idx_claims_coupon_name') IS NOT NULL
   AND to_regclass('idx_claims_user_id') IS NOT NULL
   AND to_regclass('idx_coupons_campaign') IS NOT NULL
   AND EXISTS (SELECT 1 FROM pg_attribute WHERE attrelid = to_regclass('coupons')
               AND attname = 'campaign' AND NOT attisdropped)
"""


def apply_schema(url: str) -> None:
    """Create the tables and indexes if they are missing; safe to call any number of
    times, and while claims run: a schema already there takes no lock on a table."""
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn, conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        present = conn.execute(_PRESENT_SQL).fetchone()
        if present is not None and present[0] is True:
            return
        conn.execute(SCHEMA_SQL)
