"""Plans: the same seed gives the same plan, another seed another; shapes hold."""

from __future__ import annotations

from collections import Counter

import pytest

from experiments.plans import (
    Plan,
    PlannedOp,
    draw_seed,
    interleaved_plan,
    mixed_plan,
    one_user_plan,
    stampede_plan,
)

GENERATORS = {
    "mixed": lambda seed: mixed_plan(seed, "p"),
    "stampede": lambda seed: stampede_plan(seed, "p", stock=1, users=100),
    "one_user": lambda seed: one_user_plan(seed, "p", stock=100, requests=50),
    "interleaved": lambda seed: interleaved_plan(seed, "p", ops=30, amount=50),
}


@pytest.mark.parametrize("shape", sorted(GENERATORS))
def test_same_seed_same_plan(shape: str) -> None:
    make = GENERATORS[shape]
    assert make(1234) == make(1234)
    assert make(1234).ops == make(1234).ops


@pytest.mark.parametrize("shape", sorted(GENERATORS))
def test_different_seeds_different_plans(shape: str) -> None:
    make = GENERATORS[shape]
    plans = {make(seed).ops for seed in range(10)}
    assert len(plans) == 10


def test_draw_seed_keeps_a_given_seed_and_draws_otherwise() -> None:
    assert draw_seed(7) == 7
    assert draw_seed(0) == 0
    drawn = {draw_seed() for _ in range(20)}
    assert len(drawn) == 20
    assert all(0 <= s < 2**63 for s in drawn)


def test_mixed_plan_has_the_ratios_and_collisions() -> None:
    for seed in range(30):
        plan = mixed_plan(seed, "pre", coupons=3, amount=100, ops=50, workers=10)
        assert plan.kinds() == {"create": 10, "claim": 25, "get": 15}
        assert len(plan.setup) == 3
        assert all(a == 100 for _, a in plan.setup)
        existing = {name for name, _ in plan.setup}
        creates = [o for o in plan if o.kind == "create"]
        # The first create targets an existing coupon: a 409 whatever the seed.
        assert creates[0].coupon in existing
        assert all(o.amount == 100 for o in creates)
        claims = [o for o in plan if o.kind == "claim"]
        assert all(o.user for o in claims)
        # A user pool half the size of the claims: someone claims the same coupon twice
        # in at least some seeds; every op is on a worker of the plan.
        assert {o.worker for o in plan} == set(range(10))
        assert all(o.coupon.startswith("pre-") for o in plan)
    repeats = 0
    for seed in range(30):
        pairs = Counter((o.user, o.coupon) for o in mixed_plan(seed, "x") if o.kind == "claim")
        repeats += any(n > 1 for n in pairs.values())
    assert repeats > 0


def test_stampede_plan_one_user_per_worker() -> None:
    plan = stampede_plan(5, "s", stock=3, users=40)
    assert plan.workers == 40
    assert len(plan) == 40
    assert plan.setup == (("s-hot", 3),)
    assert len({o.user for o in plan}) == 40
    assert sorted(o.worker for o in plan) == list(range(40))
    assert {o.kind for o in plan} == {"claim"}


def test_one_user_plan() -> None:
    plan = one_user_plan(5, "o", stock=100, requests=50)
    assert len({o.user for o in plan}) == 1
    assert plan.workers == 50
    assert plan.setup == (("o-one", 100),)


def test_interleaved_plan_alternates_on_one_new_name() -> None:
    plan = interleaved_plan(9, "i", ops=30, amount=50)
    assert plan.setup == ()
    assert len({o.coupon for o in plan}) == 1
    kinds = [o.kind for o in sorted(plan, key=lambda o: o.op_id)]
    assert kinds == ["create", "claim"] * 15
    assert sorted(o.worker for o in plan) == list(range(30))
    assert all(o.amount == 50 for o in plan if o.kind == "create")


def test_plan_rejects_ops_without_a_worker_and_duplicate_ids() -> None:
    with pytest.raises(ValueError, match="no worker"):
        Plan(seed=1, prefix="p", workers=1, ops=(PlannedOp(0, 1, "get", "p-x"),))
    with pytest.raises(ValueError, match="unique"):
        Plan(
            seed=1,
            prefix="p",
            workers=1,
            ops=(PlannedOp(0, 0, "get", "a"), PlannedOp(0, 0, "get", "b")),
        )
    with pytest.raises(ValueError, match="ratios"):
        mixed_plan(1, "p", create_ratio=0.8, claim_ratio=0.5)


def test_for_worker_keeps_order() -> None:
    plan = mixed_plan(3, "w", ops=50, workers=5)
    for w in range(5):
        ids = [o.op_id for o in plan.for_worker(w)]
        assert ids == sorted(ids)
        assert len(ids) == 10
