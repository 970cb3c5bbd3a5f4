"""Bundles: claim several coupons all or none, and read several coupons at once.

``claim_bundle`` runs in one READ COMMITTED transaction: it locks every coupon row of
the bundle in name order (two bundles sharing coupons wait instead of deadlocking),
makes each coupon's checks in the order asked (exists, not claimed by the user, no
other coupon of its campaign, stock left; the first refusal is raised and nothing is
written), then inserts the claims, takes the campaign slots (``campaign_claims``, in
campaign order, for the same reason) and decrements the stock.

Two multi-coupon reads, selectable by name (``ServiceConfig.multi_read``), each in one
transaction at ``ServiceConfig.isolation`` (default READ COMMITTED):

``snapshot``       one statement: every coupon as of one snapshot, at any level
``per_statement``  one statement per coupon, as a naive dashboard reads: at READ
                   COMMITTED each statement takes its own snapshot, so a bundle
                   committed between two of them is seen half applied (read skew,
                   G-single); at REPEATABLE READ and SERIALIZABLE the transaction's one
                   snapshot serves every statement

The bundle claim and the reads are registries (``BUNDLE_CLAIMS``, ``MULTI_READS``): the
lab registers its mutants there (``register_bundle_claim``, ``register_multi_read``), as
it does claim strategies; coupon_core never imports the lab.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from psycopg import errors as pg_errors

from coupon_core.errors import (
    AlreadyClaimed,
    CampaignClaimed,
    CouponNotFound,
    InvalidRequest,
    NoStock,
)
from coupon_core.strategies import Conn, Cursor, FaultHook, kept_cursor
from coupon_core.validation import storable, validate_text

__all__ = [
    "BUNDLE_CLAIMS",
    "MAX_BUNDLE",
    "MULTI_READS",
    "BundleClaim",
    "MultiRead",
    "claim_bundle",
    "read_per_statement",
    "read_snapshot",
    "register_bundle_claim",
    "register_multi_read",
    "validate_names",
]

#: The most coupons one bundle claims or one read asks for.
MAX_BUNDLE = 100

Row = tuple[str, int, int, list[str]]
#: (conn, user_id, coupon_names, fault): claims every coupon or raises.
BundleClaim = Callable[[Conn, str, Sequence[str], FaultHook | None], None]
#: (conn, names, fault, isolation level as PostgreSQL names it): the rows found.
MultiRead = Callable[[Conn, Sequence[str], FaultHook | None, str], list[Row]]

_LOCK_ALL = (
    "SELECT name, remaining_amount, campaign FROM coupons WHERE name = ANY(%s)"
    # FOR UPDATE locks rows as they leave the sort: in name order.
    " ORDER BY name FOR UPDATE"
)
_PRIOR = "SELECT coupon_name FROM claims WHERE user_id = %s AND coupon_name = ANY(%s)"
_HELD_CAMPAIGNS = (
    "SELECT DISTINCT c.campaign FROM claims cl JOIN coupons c ON c.name = cl.coupon_name"
    " WHERE cl.user_id = %s AND c.campaign = ANY(%s)"
)
_INSERT_ALL = "INSERT INTO claims (user_id, coupon_name) SELECT %s, unnest(%s::text[])"
_DECREMENT_ALL = "UPDATE coupons SET remaining_amount = remaining_amount - 1 WHERE name = ANY(%s)"
_SLOT = "INSERT INTO campaign_claims (campaign, user_id, coupon_name) VALUES (%s, %s, %s)"

_VIEW = (
    "SELECT c.name, c.amount, c.remaining_amount,"
    " COALESCE((SELECT array_agg(user_id ORDER BY id) FROM claims"
    " WHERE coupon_name = c.name), '{}')"
)
_READ_MANY = (
    _VIEW + " FROM unnest(%s::text[]) WITH ORDINALITY AS asked(name, ord)"
    " JOIN coupons c ON c.name = asked.name ORDER BY asked.ord"
)
_READ_ONE = _VIEW + " FROM coupons c WHERE c.name = %s"


def validate_names(field: str, value: object) -> list[str]:
    """A required list of 1 to ``MAX_BUNDLE`` distinct valid names."""
    if value is None:
        raise InvalidRequest(f"{field} is required")
    if not isinstance(value, list):
        raise InvalidRequest(f"{field} must be a list of strings")
    if not value:
        raise InvalidRequest(f"{field} must not be empty")
    if len(value) > MAX_BUNDLE:
        raise InvalidRequest(f"{field} must hold at most {MAX_BUNDLE} names")
    names = [validate_text(f"{field}[{i}]", item) for i, item in enumerate(value)]
    if len(set(names)) != len(names):
        raise InvalidRequest(f"{field} must not repeat a name")
    return names


def claim_bundle(
    conn: Conn, user_id: str, coupon_names: Sequence[str], fault: FaultHook | None
) -> None:
    """Claim every coupon of ``coupon_names`` for ``user_id``, or none, or raise."""
    cur = kept_cursor(conn)
    names = list(coupon_names)
    with conn.transaction():
        rows = {
            str(name): (stock, campaign)
            for name, stock, campaign in cur.execute(_LOCK_ALL, (names,)).fetchall()
        }
        prior = {str(r[0]) for r in cur.execute(_PRIOR, (user_id, names)).fetchall()}
        campaigns = sorted({str(c) for _, c in rows.values() if c is not None})
        held = {str(r[0]) for r in cur.execute(_HELD_CAMPAIGNS, (user_id, campaigns)).fetchall()}
        slots: list[tuple[str, str]] = []
        for name in names:
            if name not in rows:
                raise CouponNotFound()
            if name in prior:
                raise AlreadyClaimed()
            stock, campaign = rows[name]
            if campaign is not None:
                # Held before, or by an earlier coupon of this very bundle.
                if campaign in held:
                    raise CampaignClaimed()
                held.add(str(campaign))
                slots.append((str(campaign), name))
            assert isinstance(stock, int)
            if stock <= 0:
                raise NoStock()
        if fault is not None:
            fault("bundle_checked")
        cur.execute(_INSERT_ALL, (user_id, names))
        if fault is not None:
            fault("after_insert")
        for campaign, name in sorted(slots):
            try:
                cur.execute(_SLOT, (campaign, user_id, name))
            except pg_errors.UniqueViolation as err:
                raise CampaignClaimed() from err
        cur.execute(_DECREMENT_ALL, (names,))


def _rows(cur: Cursor) -> list[Row]:
    out: list[Row] = []
    for name, amount, remaining, claimed_by in cur.fetchall():
        assert isinstance(name, str)
        assert isinstance(amount, int)
        assert isinstance(remaining, int)
        assert isinstance(claimed_by, list)
        out.append((name, amount, remaining, [str(u) for u in claimed_by]))
    return out


def read_snapshot(
    conn: Conn, names: Sequence[str], fault: FaultHook | None = None, level: str = "READ COMMITTED"
) -> list[Row]:
    """The coupons among ``names`` that exist, in the order asked, from one snapshot."""
    cur = kept_cursor(conn)
    with conn.transaction():
        cur.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
        cur.execute(_READ_MANY, ([n for n in names if storable(n)],))
        return _rows(cur)


def read_per_statement(
    conn: Conn, names: Sequence[str], fault: FaultHook | None = None, level: str = "READ COMMITTED"
) -> list[Row]:
    """The same, one statement per coupon, in one transaction at ``level``.

    ``fault`` is called at ``"between_reads"`` after every read but the last: the seam
    a test uses to commit a bundle between two reads.
    """
    cur = kept_cursor(conn)
    with conn.transaction():
        cur.execute(f"SET TRANSACTION ISOLATION LEVEL {level}")
        return statement_by_statement(cur, names, fault)


def statement_by_statement(cur: Cursor, names: Sequence[str], fault: FaultHook | None) -> list[Row]:
    """One ``SELECT`` per coupon on ``cur``, in whatever transaction (or none) it is in."""
    asked = [n for n in names if storable(n)]
    out: list[Row] = []
    for i, name in enumerate(asked):
        cur.execute(_READ_ONE, (name,))
        out.extend(_rows(cur))
        if fault is not None and i < len(asked) - 1:
            fault("between_reads")
    return out


BUNDLE_CLAIMS: dict[str, BundleClaim] = {"one_transaction": claim_bundle}
MULTI_READS: dict[str, MultiRead] = {
    "snapshot": read_snapshot,
    "per_statement": read_per_statement,
}
_BUILT_IN = frozenset([*BUNDLE_CLAIMS, *MULTI_READS])


def register_bundle_claim(name: str, claim: BundleClaim) -> None:
    """Make another bundle claim selectable by name (the lab registers its mutants here)."""
    if name in _BUILT_IN:
        raise ValueError(f"cannot replace the built-in {name!r}")
    BUNDLE_CLAIMS[name] = claim


def register_multi_read(name: str, read: MultiRead) -> None:
    """Make another multi-coupon read selectable by name (the lab's mutants)."""
    if name in _BUILT_IN:
        raise ValueError(f"cannot replace the built-in {name!r}")
    MULTI_READS[name] = read
