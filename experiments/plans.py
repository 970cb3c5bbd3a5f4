"""Plans: every operation of an experiment, generated from a seed before anything runs.

A plan is Jepsen's generator made eager: the full list of operations (kind, coupon,
user, amount) and which worker runs each, drawn from ``random.Random(seed)``. The
same seed and prefix give the same plan; only the interleaving is left to chance.
Without a seed one is drawn with ``secrets`` and recorded in the plan.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field

from experiments.history import Op, OpKind

__all__ = [
    "Plan",
    "PlannedOp",
    "draw_seed",
    "interleaved_plan",
    "mixed_plan",
    "one_user_plan",
    "stampede_plan",
]


def draw_seed(seed: int | None = None) -> int:
    """``seed`` itself, or a fresh one (63 bits) when None."""
    return seed if seed is not None else secrets.randbits(63)


@dataclass(frozen=True, slots=True)
class PlannedOp:
    """One operation to run: what, on which coupon, by whom, and on which worker."""

    op_id: int
    worker: int
    kind: OpKind
    coupon: str
    user: str | None = None
    amount: int | None = None

    def to_op(self, phase: str | None = None) -> Op:
        return Op(
            op_id=self.op_id,
            worker=self.worker,
            kind=self.kind,
            coupon=self.coupon,
            user=self.user,
            amount=self.amount,
            phase=phase,
        )


@dataclass(frozen=True)
class Plan:
    """The operations of a run, the coupons to create before it, and the seed behind them."""

    seed: int
    prefix: str
    workers: int
    ops: tuple[PlannedOp, ...]
    #: Coupons created (name, amount) before the workers are released.
    setup: tuple[tuple[str, int], ...] = ()
    shape: str = ""
    params: dict[str, object] = field(default_factory=dict, compare=False)

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("a plan needs at least one worker")
        bad = [o.op_id for o in self.ops if not 0 <= o.worker < self.workers]
        if bad:
            raise ValueError(f"ops {bad[:5]} are assigned to no worker")
        ids = [o.op_id for o in self.ops]
        if len(set(ids)) != len(ids):
            raise ValueError("op ids must be unique")

    def __len__(self) -> int:
        return len(self.ops)

    def __iter__(self) -> Iterator[PlannedOp]:
        return iter(self.ops)

    def for_worker(self, worker: int) -> list[PlannedOp]:
        """The worker's operations, in the order it runs them."""
        return [o for o in self.ops if o.worker == worker]

    def coupons(self) -> set[str]:
        """Every coupon name the plan touches (setup included)."""
        return {name for name, _ in self.setup} | {o.coupon for o in self.ops}

    def kinds(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for o in self.ops:
            out[o.kind] = out.get(o.kind, 0) + 1
        return out


def _token(rng: random.Random) -> str:
    return f"{rng.getrandbits(32):08x}"


def _round_robin(n: int, workers: int) -> list[int]:
    return [i % workers for i in range(n)]


def mixed_plan(
    seed: int,
    prefix: str,
    *,
    coupons: int = 3,
    amount: int = 100,
    ops: int = 50,
    create_ratio: float = 0.2,
    claim_ratio: float = 0.5,
    workers: int = 10,
    new_names: int | None = None,
    users: int | None = None,
) -> Plan:
    """Creates, claims and gets over a few coupons, in seeded proportions and order.

    Creates draw their name from the existing coupons and a few new ones, so names
    collide (409s occur); the first create always targets an existing coupon, so
    at least one collision happens whatever the seed. Claims and gets target the
    same names (a new name may not exist yet: not_found) and draw users from a pool
    about half the number of claims, so some users claim twice (already_claimed).
    """
    if ops < 1 or coupons < 1:
        raise ValueError("need at least one op and one coupon")
    if not (create_ratio >= 0 and claim_ratio >= 0 and create_ratio + claim_ratio <= 1):
        raise ValueError("ratios must be in [0, 1] and sum to at most 1")
    rng = random.Random(seed)
    existing = [f"{prefix}-c{i}" for i in range(coupons)]
    n_create = round(ops * create_ratio)
    n_claim = round(ops * claim_ratio)
    n_get = ops - n_create - n_claim
    fresh_count = new_names if new_names is not None else max(1, n_create // 3)
    fresh = [f"{prefix}-n{i}-{_token(rng)}" for i in range(fresh_count)]
    names = existing + fresh
    user_pool = [f"u{i}-{_token(rng)}" for i in range(users or max(1, n_claim // 2))]
    counts: tuple[tuple[OpKind, int], ...] = (
        ("create", n_create),
        ("claim", n_claim),
        ("get", n_get),
    )
    kinds: list[OpKind] = [kind for kind, n in counts for _ in range(n)]
    rng.shuffle(kinds)
    planned: list[PlannedOp] = []
    first_create = True
    w = max(1, min(workers, ops))
    for i, kind in enumerate(kinds):
        worker = i % w
        if kind == "create":
            name = rng.choice(existing) if first_create else rng.choice(names)
            first_create = False
            planned.append(PlannedOp(i, worker, "create", name, amount=amount))
        elif kind == "claim":
            planned.append(
                PlannedOp(i, worker, "claim", rng.choice(names), user=rng.choice(user_pool))
            )
        else:
            planned.append(PlannedOp(i, worker, "get", rng.choice(names)))
    return Plan(
        seed=seed,
        prefix=prefix,
        workers=w,
        ops=tuple(planned),
        setup=tuple((name, amount) for name in existing),
        shape="mixed",
        params={"coupons": coupons, "amount": amount, "ops": ops, "workers": w},
    )


def stampede_plan(seed: int, prefix: str, *, stock: int, users: int) -> Plan:
    """Many users, one coupon: each user claims once, one worker per user."""
    if users < 1 or stock < 1:
        raise ValueError("need at least one user and a stock of at least 1")
    rng = random.Random(seed)
    coupon = f"{prefix}-hot"
    tag = _token(rng)
    ids = [f"u{i}-{tag}" for i in range(users)]
    rng.shuffle(ids)  # which worker holds which user is the seed's choice
    planned = tuple(PlannedOp(i, i, "claim", coupon, user=user) for i, user in enumerate(ids))
    return Plan(
        seed=seed,
        prefix=prefix,
        workers=users,
        ops=planned,
        setup=((coupon, stock),),
        shape="stampede",
        params={"stock": stock, "users": users},
    )


def one_user_plan(seed: int, prefix: str, *, stock: int, requests: int) -> Plan:
    """One user, one coupon, ``requests`` claims at once (one worker each)."""
    if requests < 1 or stock < 1:
        raise ValueError("need at least one request and a stock of at least 1")
    rng = random.Random(seed)
    coupon = f"{prefix}-one"
    user = f"user-{_token(rng)}"
    planned = tuple(PlannedOp(i, i, "claim", coupon, user=user) for i in range(requests))
    return Plan(
        seed=seed,
        prefix=prefix,
        workers=requests,
        ops=planned,
        setup=((coupon, stock),),
        shape="one_user",
        params={"stock": stock, "requests": requests},
    )


def interleaved_plan(seed: int, prefix: str, *, ops: int = 30, amount: int = 50) -> Plan:
    """Alternating create(amount) and claim on one new name, one worker each.

    Which worker gets which op is shuffled by the seed, so the creates are not the
    even-numbered threads every time; the op ids keep the alternation.
    """
    if ops < 2:
        raise ValueError("need at least one create and one claim")
    rng = random.Random(seed)
    coupon = f"{prefix}-new-{_token(rng)}"
    workers = list(range(ops))
    rng.shuffle(workers)
    planned: list[PlannedOp] = []
    for i in range(ops):
        if i % 2 == 0:
            planned.append(PlannedOp(i, workers[i], "create", coupon, amount=amount))
        else:
            planned.append(PlannedOp(i, workers[i], "claim", coupon, user=f"u{i}-{_token(rng)}"))
    return Plan(
        seed=seed,
        prefix=prefix,
        workers=ops,
        ops=tuple(planned),
        shape="interleaved",
        params={"ops": ops, "amount": amount},
    )
