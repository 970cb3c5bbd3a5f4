"""What a coupon's rows say, read straight from PostgreSQL (not through the service)."""

from __future__ import annotations

import psycopg

_STOCK_AND_CLAIMS = (
    "SELECT remaining_amount, (SELECT count(*) FROM claims WHERE coupon_name = %s)::int"
    " FROM coupons WHERE name = %s"
)


def stock_and_claims(
    db: str | psycopg.Connection[tuple[object, ...]], coupon: str
) -> tuple[int, int]:
    """``coupon``'s remaining stock and its number of claim rows, on a connection of its
    own (``db`` a URL) or on ``db``."""
    if isinstance(db, str):
        with psycopg.connect(db, autocommit=True) as conn:
            return stock_and_claims(conn, coupon)
    row = db.execute(_STOCK_AND_CLAIMS, (coupon, coupon)).fetchone()
    assert row is not None, f"no coupon {coupon!r}"
    remaining, claims = row
    assert isinstance(remaining, int)
    assert isinstance(claims, int)
    return remaining, claims
