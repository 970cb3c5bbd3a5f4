"""negative_stock: stock can never go below zero, by stampede, by rapid repeats, or by hand."""

from __future__ import annotations

import random
from typing import Any

import psycopg

from experiments.checks import (
    FinalState,
    Shared,
    expected_counts,
    remaining_equals,
    rows_equal,
    stampede_collided,
)
from experiments.faults.contention import LockWaits
from experiments.history import History
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.plans import Plan, PlannedOp
from experiments.result import Result, Verdict
from experiments.scenarios._shapes import STOCK, WORKERS
from experiments.spec import Range, RunSpec

NAME = "negative_stock"
TITLE = "Negative stock"
DESCRIPTION = (
    "Concurrent exhaustion (stock 5, 40 users at once), rapid sequential claims (one "
    "worker, 12 users back to back on stock 3), and a direct UPDATE that would take stock "
    "below zero. Expected: exactly 5 and 3 successes, the rest out of stock, remaining 0, "
    "and the UPDATE rejected by the CHECK constraint, changing nothing."
)
DEFAULTS: dict[str, Any] = {"stock": 5, "users": 40, "seq_stock": 3, "seq_claims": 12}
#: The fault it injects (``coupon-chaos list`` shows it).
FAULT = "none from the outside: a 40-user stampede on stock 5, and a direct UPDATE that would take stock below zero (the CHECK constraint must reject it)"
#: The values each figure may take.
RANGES: dict[str, Range] = {
    "stock": STOCK,
    "users": WORKERS,
    "seq_stock": STOCK,
    "seq_claims": Range(1, 10_000, "claims one after another"),
}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "faults"
CHECKS: tuple[str, ...] = (
    "claim_counts",
    "final_stock",
    "claim_rows",
    "claim_counts_sequential",
    "final_stock_sequential",
    "check_rejects_negative",
    "stampede_collided",
    "stampede_contended",
)


def _plan(seed: int, prefix: str, stock: int, users: int, seq_stock: int, seq_claims: int) -> Plan:
    rng = random.Random(seed)
    tag = f"{rng.getrandbits(32):08x}"
    hot, seq = f"{prefix}-hot", f"{prefix}-seq"
    ops = [PlannedOp(i, i, "claim", hot, user=f"h{i}-{tag}") for i in range(users)]
    ops += [
        PlannedOp(users + j, users, "claim", seq, user=f"s{j}-{tag}") for j in range(seq_claims)
    ]
    return Plan(
        seed=seed,
        prefix=prefix,
        workers=users + 1,
        ops=tuple(ops),
        setup=((hot, stock), (seq, seq_stock)),
        shape="negative_stock",
        params={"stock": stock, "users": users, "seq_stock": seq_stock, "seq_claims": seq_claims},
    )


def _direct_update_rejected(url: str, coupon: str) -> Verdict:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        before = conn.execute(
            "SELECT remaining_amount FROM coupons WHERE name = %s", (coupon,)
        ).fetchone()
        try:
            conn.execute(
                "UPDATE coupons SET remaining_amount = remaining_amount - 1000 WHERE name = %s",
                (coupon,),
            )
            err = None
        except psycopg.errors.CheckViolation as e:
            err = e.diag.constraint_name or "check"
        after = conn.execute(
            "SELECT remaining_amount FROM coupons WHERE name = %s", (coupon,)
        ).fetchone()
    return Verdict(
        "check_rejects_negative",
        err is not None and before == after,
        f"UPDATE below zero rejected by {err}; remaining {before} -> {after}"
        if err
        else "UPDATE below zero was accepted",
        {"constraint": err},
    )


def run(spec: RunSpec) -> Result:
    stock = int(spec["stock"])
    users = int(spec["users"])
    seq_stock = int(spec["seq_stock"])
    seq_claims = int(spec["seq_claims"])

    watchers: list[LockWaits] = []

    def observers(fr: Run) -> list[Nemesis]:
        watchers.append(LockWaits(fr.database_url, fr.application_name))
        return [watchers[-1]]

    def faults(fr: Run) -> list[Nemesis]:
        # Before the load, while the database is surely ours: the CHECK must refuse.
        fr.verdicts.append(_direct_update_rejected(fr.database_url, fr.plan.setup[0][0]))
        return []

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        hot, seq = fr.plan.setup[0][0], fr.plan.setup[1][0]
        hot_ops = History(ops=[o for o in history.ops if o.coupon == hot and o.kind == "claim"])
        seq_ops = History(ops=[o for o in history.ops if o.coupon == seq and o.kind == "claim"])
        wins, seq_wins = min(stock, users), min(seq_stock, seq_claims)
        return [
            expected_counts(hot_ops, "claim", {"ok": wins, "no_stock": users - wins}),
            remaining_equals(state, hot, stock - wins),
            rows_equal(state, hot, wins),
            expected_counts(
                seq_ops,
                "claim",
                {"ok": seq_wins, "no_stock": seq_claims - seq_wins},
                name="claim_counts_sequential",
            ),
            remaining_equals(state, seq, seq_stock - seq_wins, name="final_stock_sequential"),
        ]

    return run_pipeline(
        spec,
        Workload(
            checks=SHARED,
            make_plan=lambda s, p: _plan(s, p, stock, users, seq_stock, seq_claims),
            faults=faults,
            expect=expect,
            fault_s=0.0,
            observers=observers,
            # The hot part is a stampede of ``users`` workers: it must collide, in the
            # history and in the database (a global lock in the service keeps the first
            # and hides the race from the second).
            validity=lambda r: [
                stampede_collided(
                    History(ops=[o for o in r.history.ops if o.coupon == r.plan.setup[0][0]]),
                    users,
                    phase=None,
                ),
                watchers[-1].verdict(),
            ],
            after_s=spec.run_timeout_s,
        ),
    )
