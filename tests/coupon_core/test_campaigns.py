"""Campaigns on the real database: one coupon per user and campaign, six ways.

The write-skew tests interleave two claims deterministically through the service's
fault hook: each claim stops after the read its rule rests on (``after_campaign_check``)
until the other has read too, so both read before either writes.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Iterator

import psycopg
import pytest

from coupon_core import CouponError, CouponService
from coupon_core.campaigns import available_campaign_strategies
from coupon_core.errors import AlreadyClaimed, CampaignClaimed, CouponNotFound, NoStock
from tests.procs import stampede

WAIT_S = 30.0


@pytest.fixture(params=available_campaign_strategies())
def campaign_service(request: pytest.FixtureRequest, db_url: str) -> Iterator[CouponService]:
    svc = CouponService.connect(
        db_url, campaign_strategy=request.param, pool_max=24, pool_timeout=20
    )
    try:
        yield svc
    finally:
        svc.close()


def _service(db_url: str, strategy: str) -> CouponService:
    return CouponService.connect(db_url, campaign_strategy=strategy, pool_max=24, pool_timeout=20)


def held(url: str, user: str, campaign: str) -> list[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT cl.coupon_name FROM claims cl JOIN coupons c ON c.name = cl.coupon_name"
            " WHERE cl.user_id = %s AND c.campaign = %s ORDER BY cl.id",
            (user, campaign),
        ).fetchall()
    return [str(r[0]) for r in rows]


def remaining(url: str, name: str) -> int:
    with psycopg.connect(url) as conn:
        row = conn.execute("SELECT remaining_amount FROM coupons WHERE name = %s", (name,))
        found = row.fetchone()
    assert found is not None
    return int(found[0])


def test_strategy_names() -> None:
    assert available_campaign_strategies() == [
        "constraint",
        "lock",
        "naive",
        "naive_rc",
        "naive_rr",
        "naive_serializable",
        "serializable",
    ]
    with pytest.raises(ValueError, match="unknown campaign strategy"):
        CouponService.connect("postgresql://unused", campaign_strategy="nope", apply_schema=False)
    with pytest.raises(ValueError, match="unknown isolation"):
        CouponService.connect("postgresql://unused", isolation="dirty", apply_schema=False)
    with pytest.raises(ValueError, match="unknown bundle_claim"):
        CouponService.connect("postgresql://unused", bundle_claim="nope", apply_schema=False)


def test_sequential_rule(campaign_service: CouponService, db_url: str, unique: str) -> None:
    svc = campaign_service
    svc.create(f"{unique}-a", 5, campaign=f"{unique}-x")
    svc.create(f"{unique}-b", 5, campaign=f"{unique}-x")
    svc.create(f"{unique}-c", 5, campaign=f"{unique}-y")
    svc.create(f"{unique}-free", 5)
    svc.claim("u1", f"{unique}-a")
    with pytest.raises(CampaignClaimed, match=r"^campaign already claimed by user$"):
        svc.claim("u1", f"{unique}-b")
    with pytest.raises(AlreadyClaimed):  # the same coupon: the contract's answer first
        svc.claim("u1", f"{unique}-a")
    svc.claim("u1", f"{unique}-c")  # another campaign
    svc.claim("u1", f"{unique}-free")  # no campaign
    svc.claim("u2", f"{unique}-b")  # another user
    assert held(db_url, "u1", f"{unique}-x") == [f"{unique}-a"]
    # The refusal changed nothing.
    assert remaining(db_url, f"{unique}-b") == 4
    assert svc.get(f"{unique}-b").claimed_by == ["u2"]


def test_check_order(campaign_service: CouponService, unique: str) -> None:
    svc = campaign_service
    svc.create(f"{unique}-a", 1, campaign=f"{unique}-x")
    svc.create(f"{unique}-b", 1, campaign=f"{unique}-x")
    svc.claim("u1", f"{unique}-a")
    svc.claim("u2", f"{unique}-b")  # b is now out of stock
    with pytest.raises(CouponNotFound):
        svc.claim("u1", f"{unique}-none")
    with pytest.raises(CampaignClaimed):  # the campaign is checked before the stock
        svc.claim("u1", f"{unique}-b")
    with pytest.raises(NoStock):
        svc.claim("u3", f"{unique}-b")


def _both_read_first(svc: CouponService) -> None:
    """Each claim waits, after its campaign check, until the other has checked too
    (once per thread: a retried attempt goes straight on)."""
    barrier = threading.Barrier(2, timeout=WAIT_S)
    seen = threading.local()

    def fault(point: str) -> None:
        if point == "after_campaign_check" and not getattr(seen, "done", False):
            seen.done = True
            barrier.wait()

    svc.fault = fault


def _two_claims(svc: CouponService, unique: str) -> Counter[str]:
    svc.create(f"{unique}-a", 5, campaign=f"{unique}-x")
    svc.create(f"{unique}-b", 5, campaign=f"{unique}-x")
    names = [f"{unique}-a", f"{unique}-b"]
    return stampede(2, lambda i: svc.claim("u1", names[i]), bound_s=WAIT_S)


@pytest.mark.parametrize("strategy", ["naive_rc", "naive_rr"])
def test_naive_check_then_insert_allows_write_skew(db_url: str, unique: str, strategy: str) -> None:
    with _service(db_url, strategy) as svc:
        _both_read_first(svc)
        outcomes = _two_claims(svc, unique)
    # Both read "no coupon of the campaign yet", both wrote: G2-item, as documented.
    assert outcomes == Counter({"ok": 2})
    assert sorted(held(db_url, "u1", f"{unique}-x")) == [f"{unique}-a", f"{unique}-b"]


@pytest.mark.parametrize(
    ("strategy", "loser"),
    [
        ("constraint", "campaign_claimed"),  # the slot's PRIMARY KEY refuses the second
        ("naive_serializable", "unavailable"),  # 40001 and no retry: a 503
        ("serializable", "campaign_claimed"),  # 40001, retried, then refused by the check
    ],
)
def test_the_same_interleaving_is_refused(
    db_url: str, unique: str, strategy: str, loser: str
) -> None:
    with _service(db_url, strategy) as svc:
        _both_read_first(svc)
        outcomes = _two_claims(svc, unique)
    assert outcomes == Counter({"ok": 1, loser: 1})
    assert len(held(db_url, "u1", f"{unique}-x")) == 1


def test_lock_makes_the_second_claim_wait_before_its_check(db_url: str, unique: str) -> None:
    """The interleaving cannot happen under ``lock``: the first claim, stopped after its
    check, holds the (campaign, user) lock; the second is seen waiting for it."""
    with _service(db_url, "lock") as svc:
        svc.create(f"{unique}-a", 5, campaign=f"{unique}-x")
        svc.create(f"{unique}-b", 5, campaign=f"{unique}-x")
        first_checked, release = threading.Event(), threading.Event()
        first = threading.local()

        def fault(point: str) -> None:
            if point == "after_campaign_check" and not first_checked.is_set():
                first.me = True
                first_checked.set()
                assert release.wait(WAIT_S)

        svc.fault = fault
        results: dict[str, str] = {}

        def claim(name: str) -> None:
            try:
                svc.claim("u1", name)
                results[name] = "ok"
            except CouponError as err:
                results[name] = err.kind

        a = threading.Thread(target=claim, args=(f"{unique}-a",))
        a.start()
        assert first_checked.wait(WAIT_S)
        b = threading.Thread(target=claim, args=(f"{unique}-b",))
        b.start()
        assert _advisory_waiter(db_url), "the second claim never waited on the lock"
        release.set()
        a.join(WAIT_S)
        b.join(WAIT_S)
    assert results == {f"{unique}-a": "ok", f"{unique}-b": "campaign_claimed"}


def _advisory_waiter(url: str) -> bool:
    deadline = time.monotonic() + WAIT_S
    with psycopg.connect(url, autocommit=True) as conn:
        while time.monotonic() < deadline:
            row = conn.execute(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted"
            ).fetchone()
            if row is not None and int(row[0]) > 0:
                return True
            time.sleep(0.01)
    return False


@pytest.mark.parametrize("strategy", ["constraint", "lock", "serializable"])
def test_stampede_one_user_many_coupons(db_url: str, unique: str, strategy: str) -> None:
    n = 16
    with _service(db_url, strategy) as svc:
        for i in range(n):
            svc.create(f"{unique}-{i}", 3, campaign=f"{unique}-x")
        # Make the stampede collide on the rule: each claim waits after its check until
        # all have checked or a short while passed (the lock strategy never lets a
        # second one check while the first holds the lock).
        barrier = threading.Barrier(n, timeout=1.0)

        def fault(point: str) -> None:
            if point == "after_campaign_check":
                with contextlib.suppress(threading.BrokenBarrierError):
                    barrier.wait()

        svc.fault = fault
        outcomes = stampede(n, lambda i: svc.claim("u1", f"{unique}-{i}"), bound_s=WAIT_S)
    assert outcomes == Counter({"ok": 1, "campaign_claimed": n - 1})
    assert len(held(db_url, "u1", f"{unique}-x")) == 1
    with psycopg.connect(db_url) as conn:
        row = conn.execute(
            "SELECT sum(amount - remaining_amount) FROM coupons WHERE campaign = %s",
            (f"{unique}-x",),
        ).fetchone()
    assert row is not None
    assert int(row[0]) == 1  # stock taken once, by the one claim that stood


def test_plain_sql_inserts_still_work(db_url: str, unique: str) -> None:
    """Outside clients insert rows with the contract's columns only."""
    with psycopg.connect(db_url, autocommit=True) as conn:
        conn.execute(
            "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, 2, 2)",
            (f"{unique}-sql",),
        )
        conn.execute(
            "INSERT INTO coupons (name, amount, remaining_amount, campaign) VALUES (%s, 2, 2, %s)",
            (f"{unique}-camp", f"{unique}-x"),
        )
        conn.execute(
            "INSERT INTO claims (user_id, coupon_name) VALUES ('u', %s), ('u', %s)",
            (f"{unique}-sql", f"{unique}-camp"),
        )
        row = conn.execute(
            "SELECT campaign FROM coupons WHERE name = %s", (f"{unique}-sql",)
        ).fetchone()
        assert row == (None,)
        # The lab's clean-up: claims first, then coupons; a campaign slot goes with its claim.
        with CouponService.connect(db_url, pool_max=2) as svc:
            svc.create(f"{unique}-c2", 2, campaign=f"{unique}-y")
            svc.claim("v", f"{unique}-c2")
        conn.execute("DELETE FROM claims WHERE coupon_name LIKE %s", (f"{unique}%",))
        conn.execute("DELETE FROM coupons WHERE name LIKE %s", (f"{unique}%",))
        row = conn.execute(
            "SELECT count(*) FROM campaign_claims WHERE campaign = %s", (f"{unique}-y",)
        ).fetchone()
        assert row == (0,)


def test_bad_campaign_is_refused_and_creates_nothing(service: CouponService, unique: str) -> None:
    for bad, why in [("", "must not be blank"), ("x" * 256, "at most 255"), (7, "a string")]:
        with pytest.raises(CouponError, match=why):
            service.create(f"{unique}-bad", 1, campaign=bad)  # type: ignore[arg-type]
    with pytest.raises(CouponNotFound):
        service.get(f"{unique}-bad")
