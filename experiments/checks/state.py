"""The final state of a run's rows, read from the tables with plain SQL, like any client."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg

__all__ = ["FinalState", "like_prefix", "read_state"]


@dataclass
class FinalState:
    """The run's rows: coupons by name (amount, remaining) and claims (id, user, coupon)."""

    prefix: str
    coupons: dict[str, tuple[int, int]] = field(default_factory=dict)
    claims: list[tuple[int, str, str]] = field(default_factory=list)
    #: Why the tables could not be read (a target without database access): every
    #: check given this state is skipped with the reason, never passed.
    unavailable: str | None = None

    def claim_rows(self, coupon: str | None = None) -> int:
        return sum(1 for _, _, c in self.claims if coupon is None or c == coupon)

    def remaining(self, coupon: str) -> int | None:
        row = self.coupons.get(coupon)
        return None if row is None else row[1]


def like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def read_state(conn: psycopg.Connection[Any], prefix: str) -> FinalState:
    """Read the coupons and claims whose coupon name starts with ``prefix``.

    Claims are read by their own ``coupon_name`` (not through a join), so a claim
    whose coupon is missing, an orphan, is seen too.
    """
    if not prefix:
        raise ValueError("a check reads only its own run's rows: give a non-empty prefix")
    pattern = like_prefix(prefix)
    state = FinalState(prefix=prefix)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT name, amount, remaining_amount FROM coupons WHERE name LIKE %s ORDER BY name",
            (pattern,),
        )
        for name, amount, remaining in cur.fetchall():
            state.coupons[str(name)] = (int(amount), int(remaining))
        cur.execute(
            "SELECT id, user_id, coupon_name FROM claims WHERE coupon_name LIKE %s ORDER BY id",
            (pattern,),
        )
        state.claims = [(int(i), str(u), str(c)) for i, u, c in cur.fetchall()]
    return state
