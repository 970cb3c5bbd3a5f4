"""A failure between claim insert and stock decrement rolls the whole claim back."""

from __future__ import annotations

import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.errors import Unavailable
from experiments.faults import FailAfterInsert, InjectedFault
from tests.tables import stock_and_claims


@pytest.mark.parametrize("strategy", ["row_lock", "advisory", "serializable", "row_lock_pipelined"])
def test_every_second_claim_fails_and_leaves_nothing(
    db_url: str, unique: str, strategy: str
) -> None:
    coupon = f"{unique}-c"
    hook = FailAfterInsert(every=2)
    with CouponService.connect(db_url, ServiceConfig(strategy=strategy, pool_min=1)) as svc:
        svc.create(coupon, 20)
        svc.fault = hook
        ok, unavailable = [], []
        causes: list[BaseException | None] = []
        for i in range(10):
            try:
                svc.claim(f"u{i}", coupon)
                ok.append(i)
            except Unavailable as err:
                causes.append(err.__cause__)
                unavailable.append(i)
    assert all(isinstance(c, InjectedFault) for c in causes)
    assert hook.reached == 10
    assert hook.failed == 5
    assert ok == [0, 2, 4, 6, 8]
    assert unavailable == [1, 3, 5, 7, 9]
    # Five inserts were made and rolled back: exactly the five acknowledged claims remain.
    assert stock_and_claims(db_url, coupon) == (15, 5)


def test_atomic_has_no_point_between_insert_and_decrement(db_url: str, unique: str) -> None:
    coupon = f"{unique}-c"
    hook = FailAfterInsert(rate=1.0)
    with CouponService.connect(db_url, ServiceConfig(strategy="atomic", pool_min=1)) as svc:
        svc.create(coupon, 3)
        svc.fault = hook
        svc.claim("u", coupon)
    assert hook.reached == 0
    assert stock_and_claims(db_url, coupon) == (2, 1)


def test_seeded_rate_is_reproducible() -> None:
    def pattern(seed: int) -> list[bool]:
        hook = FailAfterInsert(rate=0.3, seed=seed)
        out = []
        for _ in range(50):
            try:
                hook("after_insert")
                out.append(False)
            except InjectedFault:
                out.append(True)
        return out

    assert pattern(11) == pattern(11)
    assert pattern(11) != pattern(12)
    assert 5 <= sum(pattern(11)) <= 25


def test_choice_is_required() -> None:
    with pytest.raises(ValueError, match="choose claims to fail"):
        FailAfterInsert()


def _every_strategy() -> list[str]:
    from coupon_core import available_strategies
    from experiments import mutants

    mutants.install()
    return available_strategies(include_registered=True)


@pytest.mark.parametrize("strategy", _every_strategy())
def test_after_insert_declaration_matches_each_strategys_code(
    db_url: str, unique: str, strategy: str
) -> None:
    """``AFTER_INSERT`` says which strategies reach the point; partial_failure skips its
    fault check only for the others. Held here to the code: one claim with a hook
    counting the points it is called at."""
    from experiments.faults.partial import AFTER_INSERT, after_insert_absent

    coupon = f"{unique}-c"
    points: list[str] = []
    with CouponService.connect(db_url, ServiceConfig(strategy=strategy, pool_min=1)) as svc:
        svc.create(coupon, 5)
        svc.fault = points.append
        svc.claim("u1", coupon)
    reached = "after_insert" in points
    assert reached == (strategy in AFTER_INSERT), (strategy, points)
    assert (after_insert_absent(strategy) is None) == reached
