"""Bundles and the multi-coupon read on the real database: all or none, one snapshot."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable

import psycopg
import pytest

from coupon_core import CouponError, CouponService, InvalidRequest
from coupon_core.bundles import MAX_BUNDLE
from coupon_core.errors import AlreadyClaimed, CampaignClaimed, CouponNotFound, NoStock
from tests.procs import stampede

WAIT_S = 30.0


def state(url: str, prefix: str) -> list[tuple[str, int, list[str]]]:
    """Every coupon of ``prefix``: name, remaining, claimants (to compare before/after)."""
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT c.name, c.remaining_amount, COALESCE((SELECT array_agg(user_id ORDER BY id)"
            " FROM claims WHERE coupon_name = c.name), '{}') FROM coupons c"
            " WHERE c.name LIKE %s ORDER BY c.name",
            (f"{prefix}%",),
        ).fetchall()
    return [(str(n), int(r), [str(u) for u in cb]) for n, r, cb in rows]


def test_bundle_claims_all(service: CouponService, db_url: str, unique: str) -> None:
    for s in "abc":
        service.create(f"{unique}-{s}", 2)
    service.claim_bundle("u1", [f"{unique}-c", f"{unique}-a"])
    assert state(db_url, unique) == [
        (f"{unique}-a", 1, ["u1"]),
        (f"{unique}-b", 2, []),
        (f"{unique}-c", 1, ["u1"]),
    ]


@pytest.mark.parametrize(
    ("setup", "error"),
    [
        ("missing", CouponNotFound),
        ("claimed", AlreadyClaimed),
        ("empty", NoStock),
        ("campaign", CampaignClaimed),
    ],
)
def test_a_refusal_in_the_middle_takes_nothing(
    service: CouponService, db_url: str, unique: str, setup: str, error: type[CouponError]
) -> None:
    service.create(f"{unique}-a", 3, campaign=f"{unique}-x")
    service.create(f"{unique}-c", 3)
    middle = f"{unique}-b"
    if setup != "missing":
        service.create(middle, 1, campaign=f"{unique}-x" if setup == "campaign" else None)
    if setup == "claimed":
        service.claim("u1", middle)
    if setup == "empty":
        service.claim("u2", middle)
    before = state(db_url, unique)
    with pytest.raises(error):
        service.claim_bundle("u1", [f"{unique}-a", middle, f"{unique}-c"])
    assert state(db_url, unique) == before


def test_two_coupons_of_one_campaign_in_one_bundle(
    service: CouponService, db_url: str, unique: str
) -> None:
    service.create(f"{unique}-a", 3, campaign=f"{unique}-x")
    service.create(f"{unique}-b", 3, campaign=f"{unique}-x")
    with pytest.raises(CampaignClaimed):
        service.claim_bundle("u1", [f"{unique}-a", f"{unique}-b"])
    assert state(db_url, unique) == [(f"{unique}-a", 3, []), (f"{unique}-b", 3, [])]
    # A bundle's campaign slot binds later single claims too.
    service.claim_bundle("u1", [f"{unique}-a"])
    with pytest.raises(CampaignClaimed):
        service.claim("u1", f"{unique}-b")


def test_a_failure_after_the_insert_commits_nothing(
    service: CouponService, db_url: str, unique: str
) -> None:
    service.create(f"{unique}-a", 3)
    service.create(f"{unique}-b", 3)

    def fault(point: str) -> None:
        if point == "after_insert":
            raise RuntimeError("injected between insert and decrement")

    service.fault = fault
    with pytest.raises(RuntimeError):
        service.claim_bundle("u1", [f"{unique}-a", f"{unique}-b"])
    service.fault = None
    assert state(db_url, unique) == [(f"{unique}-a", 3, []), (f"{unique}-b", 3, [])]


@pytest.mark.parametrize(
    ("names", "why"),
    [
        (None, "coupon_names is required"),
        ("a", "coupon_names must be a list of strings"),
        ([], "coupon_names must not be empty"),
        (
            [f"n{i}" for i in range(MAX_BUNDLE + 1)],
            f"coupon_names must hold at most {MAX_BUNDLE} names",
        ),
        (["a", 3], r"coupon_names\[1\] must be a string"),
        (["a", " "], r"coupon_names\[1\] must not be blank"),
        (["a", "a"], "coupon_names must not repeat a name"),
    ],
)
def test_bundle_input_is_validated(
    service: CouponService, db_url: str, unique: str, names: object, why: str
) -> None:
    service.create(f"{unique}-a", 3)
    with pytest.raises(InvalidRequest, match=f"^invalid request: {why}"):
        service.claim_bundle("u1", names)  # type: ignore[arg-type]
    assert state(db_url, unique) == [(f"{unique}-a", 3, [])]


def test_bundle_stampede_conserves_stock(db_url: str, unique: str) -> None:
    n, stock = 12, 4
    with CouponService.connect(db_url, pool_max=16, pool_timeout=20) as svc:
        for s in "abc":
            svc.create(f"{unique}-{s}", stock)
        names = [f"{unique}-c", f"{unique}-a", f"{unique}-b"]  # not in name order
        # Half the bundles ask in the other order: locks go in name order anyway.
        orders = [names if i % 2 else list(reversed(names)) for i in range(n)]
        outcomes = stampede(n, lambda i: svc.claim_bundle(f"u{i}", orders[i]), bound_s=WAIT_S)
    assert outcomes == Counter({"ok": stock, "no_stock": n - stock})
    rows = state(db_url, unique)
    assert [r[1] for r in rows] == [0, 0, 0]
    assert rows[0][2] == rows[1][2] == rows[2][2]  # the same users got all three


def test_get_many_in_the_order_asked(service: CouponService, unique: str) -> None:
    service.create(f"{unique}-a", 2)
    service.create(f"{unique},b", 3)  # a comma in a name is fine at this layer
    service.claim("u1", f"{unique},b")
    for variant in ("snapshot", "per_statement"):
        views = service.get_many(
            [f"{unique},b", f"{unique}-none", f"{unique}-a", "\x00"], multi_read=variant
        )
        assert [(v.name, v.remaining_amount, v.claimed_by) for v in views] == [
            (f"{unique},b", 2, ["u1"]),
            (f"{unique}-a", 2, []),
        ]


@pytest.mark.parametrize(
    ("names", "why"),
    [
        ([], "names must not be empty"),
        (["a", "a"], "names must not repeat a name"),
        (["a", ""], "names must not hold a blank name"),
        ([f"n{i}" for i in range(MAX_BUNDLE + 1)], f"at most {MAX_BUNDLE}"),
    ],
)
def test_get_many_rejects(service: CouponService, names: list[str], why: str) -> None:
    with pytest.raises(InvalidRequest, match=why):
        service.get_many(names)
    with pytest.raises(InvalidRequest, match="unknown multi_read"):
        service.get_many(["a"], multi_read="nope")


def _bundle_between_reads(
    svc: CouponService, other: CouponService, user: str, names: list[str]
) -> Callable[[str], None]:
    done = threading.Event()

    def fault(point: str) -> None:
        if point == "between_reads" and not done.is_set():
            done.set()
            other.claim_bundle(user, names)  # commits between the dashboard's two reads

    return fault


def test_per_statement_read_sees_a_bundle_half_applied(db_url: str, unique: str) -> None:
    a, b = f"{unique}-a", f"{unique}-b"
    with (
        CouponService.connect(db_url, pool_max=4) as svc,
        CouponService.connect(db_url, pool_max=4) as other,
    ):
        svc.create(a, 5)
        svc.create(b, 5)
        svc.fault = _bundle_between_reads(svc, other, "u1", [a, b])
        views = svc.get_many([a, b], multi_read="per_statement")
        # Read skew (G-single): a before the bundle, b after it.
        assert [v.claimed_by for v in views] == [[], ["u1"]]
        svc.fault = _bundle_between_reads(svc, other, "u2", [a, b])
        views = svc.get_many([a, b], multi_read="snapshot")
        # One statement: the hook has no point to run at, and both are seen alike.
        assert [v.claimed_by for v in views] == [["u1"], ["u1"]]
