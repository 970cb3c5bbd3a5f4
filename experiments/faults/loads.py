"""Seeded loads for fault scenarios: a steady stream of claims (and reads) over a few coupons."""

from __future__ import annotations

import random
import time
from collections.abc import Collection, Sequence

from experiments.clients import Client
from experiments.history import History, Op
from experiments.plans import Plan, PlannedOp

__all__ = ["FAULT_COMMON", "BackingOff", "claim_stream_plan"]

#: The common parameters a fault scenario on a claim stream runs with (its ``COMMON``):
#: an operation's bound short enough that a hung call shows within the run, and a run
#: bound that holds the fault, its recovery and the checks.
FAULT_COMMON: dict[str, float] = {"op_timeout_s": 5.0, "run_timeout_s": 30.0}


class BackingOff:
    """A client that pauses ``pause_s`` after an op ending in one of ``on``, as a real
    client honouring a 503 (or a cut connection) would.

    While the service's circuit breaker is open a refusal takes microseconds (~18 000
    a second in-process, measured): a load that does not pause spends its whole plan
    in the outage, leaves nothing to show the recovery, and hands the linearizability
    check a history of tens of thousands of refusals. Against a target behind a proxy
    that resets connections, ``on=("unknown", "unavailable")``: without it a 0.4 s
    reset window made 3,700 unknown claims. The pause comes after the op is recorded,
    so no latency includes it; it bounds how late a recovery is seen. ``ready`` and
    ``release`` pass through, so an HTTP client still warms up before the gate.
    """

    def __init__(
        self, inner: Client, pause_s: float, *, on: Collection[str] = ("unavailable",)
    ) -> None:
        self.inner = inner
        self.layer = inner.layer
        self.pause_s = pause_s
        self.on = frozenset(on)

    def invoke(self, op: Op, history: History | None = None) -> Op:
        done = self.inner.invoke(op, history)
        if done.result in self.on:
            time.sleep(self.pause_s)
        return done

    def ready(self, ops: Sequence[Op] = ()) -> None:
        ready = getattr(self.inner, "ready", None)
        if ready is not None:
            ready(list(ops))

    def release(self) -> None:
        release = getattr(self.inner, "release", None)
        if release is not None:
            release()

    def close(self) -> None:
        self.inner.close()


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
