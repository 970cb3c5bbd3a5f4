"""Seeded loads for fault scenarios: a steady stream of claims (and reads) over a few coupons."""

from __future__ import annotations

import random

from experiments.plans import Plan, PlannedOp

__all__ = ["claim_stream_plan"]


def claim_stream_plan(
    seed: int,
    prefix: str,
    *,
    coupons: int = 2,
    stock: int = 100_000,
    workers: int = 8,
    ops_per_worker: int = 200,
    get_ratio: float = 0.1,
    hot: bool = False,
) -> Plan:
    """Each worker claims for new users (and now and then reads) back to back.

    Stock is large so every clean refusal is a fault's doing, not the plan's; each
    claim has its own user, so a repeat can only come from a retried claim. ``hot``
    puts every op on the first coupon. The run is stopped by the fault pipeline
    after the fault, so the plan is an upper bound, not a script.
    """
    if workers < 1 or ops_per_worker < 1 or coupons < 1:
        raise ValueError("need at least one worker, one op per worker and one coupon")
    rng = random.Random(seed)
    tag = f"{rng.getrandbits(32):08x}"
    names = [f"{prefix}-c{i}" for i in range(coupons)]
    ops: list[PlannedOp] = []
    op_id = 0
    for step in range(ops_per_worker):
        for w in range(workers):
            coupon = names[0] if hot else rng.choice(names)
            if rng.random() < get_ratio:
                ops.append(PlannedOp(op_id, w, "get", coupon))
            else:
                ops.append(PlannedOp(op_id, w, "claim", coupon, user=f"u{w}-{step}-{tag}"))
            op_id += 1
    return Plan(
        seed=seed,
        prefix=prefix,
        workers=workers,
        ops=tuple(ops),
        setup=tuple((n, stock) for n in names),
        shape="claim_stream",
        params={
            "coupons": coupons,
            "stock": stock,
            "workers": workers,
            "ops_per_worker": ops_per_worker,
        },
    )
