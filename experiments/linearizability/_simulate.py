"""Linearizable histories by simulation: seeded concurrent runs against the sequential model."""

from __future__ import annotations

from experiments.history import History, Op, OpKind

__all__ = ["simulate_history"]


def simulate_history(
    seed: int,
    *,
    coupons: int = 1,
    ops: int = 1000,
    stock: int = 100,
    workers: int = 16,
    users: int | None = None,
    gets: float = 0.2,
    creates: float = 0.02,
    unknown: float = 0.0,
    stampede: bool = False,
) -> History:
    """A linearizable history: a seeded concurrent run against the sequential model.

    Each op gets a random interval and takes effect at a random instant inside it
    (its linearization point); results come from applying the ops in that order.
    ``stampede`` starts every claim within a few microseconds, as a barrier does.
    ``unknown`` is the share of ops whose outcome is lost (their effect, if any,
    lands with probability one half). Each coupon is created before anything else.
    """
    import random

    rng = random.Random(seed)
    names = [f"c{k}" for k in range(coupons)]
    user_pool = users if users is not None else max(1, ops // 2)
    planned: list[
        tuple[int, int, int, OpKind | None, str]
    ] = []  # invoke, complete, point, kind, coupon
    for name in names:
        planned.append((0, 1_000, 500, "create", name))
    if stampede:
        for _ in range(ops - coupons):
            invoke = 2_000 + rng.randrange(5_000)
            complete = invoke + 1_000 + rng.randrange(200_000)
            planned.append((invoke, complete, rng.randrange(invoke, complete + 1), None, ""))
    else:
        per_worker = max(1, (ops - coupons) // workers)
        for _ in range(workers):
            t = 2_000 + rng.randrange(10_000)
            for _ in range(per_worker):
                invoke = t + rng.randrange(2_000)
                complete = invoke + 500 + rng.randrange(20_000)
                planned.append((invoke, complete, rng.randrange(invoke, complete + 1), None, ""))
                t = complete
    state: dict[str, tuple[int, int, list[str]]] = {}  # amount, remaining, claimants
    history = History(origin_ns=0)
    for op_id, (invoke, complete, _, kind, coupon) in enumerate(
        sorted(planned, key=lambda p: p[2])
    ):
        if kind is None:
            roll = rng.random()
            kind = "create" if roll < creates else "get" if roll < creates + gets else "claim"
            coupon = rng.choice(names)
        op = Op(
            op_id, op_id % max(workers, 1), kind, coupon, invoke_ns=invoke, complete_ns=complete
        )
        lost = rng.random() < unknown and kind != "create"
        lands = not lost or rng.random() < 0.5
        current = state.get(coupon)
        if kind == "create":
            op.amount = stock
            op.result = "coupon_exists" if current else "ok"
            if current is None and lands:
                state[coupon] = (stock, stock, [])
        elif kind == "get":
            op.result = "not_found" if current is None else "ok"
            if current is not None:
                op.value = {
                    "amount": current[0],
                    "remaining_amount": current[1],
                    "claimed_by": list(current[2]),
                }
        else:
            op.user = f"u{rng.randrange(user_pool)}"
            if current is None:
                op.result = "not_found"
            elif op.user in current[2]:
                op.result = "already_claimed"
            elif current[1] <= 0:
                op.result = "no_stock"
            else:
                op.result = "ok"
                if lands:
                    state[coupon] = (current[0], current[1] - 1, [*current[2], op.user])
        if lost:
            op.result, op.value = "unknown", None
        history.append(op)
    return history
