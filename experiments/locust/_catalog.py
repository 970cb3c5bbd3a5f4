"""The scenarios Locust can drive: a plan from their seed, and what their result must show.

A Locust run needs a plan decided before it starts and expectations on the history
and the final tables; the catalog's plan-shaped scenarios have both. Fault scenarios
bring their own nemesis inside the lab's process and are not in this table.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from experiments.checks import (
    FinalState,
    at_least,
    expected_counts,
    gets_consistent,
    remaining_equals,
    rows_equal,
)
from experiments.history import History
from experiments.linearizability import MAX_CLOCK_UNCERTAINTY_MS
from experiments.plans import Plan, mixed_plan, one_user_plan, stampede_plan
from experiments.result import Verdict
from experiments.spec import Range

__all__ = ["LOCUST_DEFAULTS", "LOCUST_RANGES", "LOCUST_SCENARIOS", "Driven", "driven"]

#: What every Locust run takes beside its scenario's figures (``run_locust``'s keywords,
#: ``-p`` of ``coupon-chaos locust``, the locust_stampede scenario's parameters).
LOCUST_DEFAULTS: dict[str, Any] = {"max_clock_uncertainty_ms": MAX_CLOCK_UNCERTAINTY_MS}
#: Widening the ops of two processes by +-u lets ops up to 2u apart be put in either
#: order. A stampede of 100 users from 2 Locust workers over HTTP lasts 0.34-0.87 s of
#: load wall here (10 seeds, 2026-12-07, a loaded 2-core machine) and its widening was
#: 0.17-0.28 ms: past 100 ms (200 ms either way) a bound could excuse the order of a
#: fifth to a half of a stampede and the check would test little. 0 takes no widening
#: at all (any measured uncertainty: unknown).
LOCUST_RANGES: dict[str, Range] = {
    "max_clock_uncertainty_ms": Range(
        0, 100, "ms; past 100 a widening could excuse much of a stampede's order"
    )
}


@dataclass(frozen=True)
class Driven:
    """A scenario as Locust drives it: its parameters, its plan, its expectations."""

    name: str
    defaults: dict[str, Any]
    make_plan: Callable[[int, str, dict[str, Any]], Plan]
    expect: Callable[[History, FinalState, Plan, dict[str, Any]], list[Verdict]]


def _stampede_expect(
    history: History, state: FinalState, plan: Plan, p: dict[str, Any]
) -> list[Verdict]:
    coupon = plan.setup[0][0]
    wins = min(p["stock"], p["users"])
    return [
        expected_counts(history, "claim", {"ok": wins, "no_stock": p["users"] - wins}),
        remaining_equals(state, coupon, p["stock"] - wins),
        rows_equal(state, coupon, wins),
    ]


def _one_user_expect(
    history: History, state: FinalState, plan: Plan, p: dict[str, Any]
) -> list[Verdict]:
    coupon = plan.setup[0][0]
    return [
        expected_counts(history, "claim", {"ok": 1, "already_claimed": p["requests"] - 1}),
        remaining_equals(state, coupon, p["stock"] - 1),
        rows_equal(state, coupon, 1),
    ]


def _mixed_expect(
    history: History, state: FinalState, plan: Plan, p: dict[str, Any]
) -> list[Verdict]:
    verdicts = [gets_consistent(history)]
    if plan.kinds().get("create"):
        verdicts.append(at_least(history, "create", "coupon_exists", 1, name="creates_collided"))
    return verdicts


def _stampede(seed: int, prefix: str, p: dict[str, Any]) -> Plan:
    return stampede_plan(seed, prefix, stock=p["stock"], users=p["users"])


def _one_user(seed: int, prefix: str, p: dict[str, Any]) -> Plan:
    return one_user_plan(seed, prefix, stock=p["stock"], requests=p["requests"])


def _mixed(seed: int, prefix: str, p: dict[str, Any]) -> Plan:
    return mixed_plan(seed, prefix, **p)


_STAMPEDE = {"stock": 1, "users": 100}
LOCUST_SCENARIOS: dict[str, Driven] = {
    "zero_stock_stampede": Driven("zero_stock_stampede", _STAMPEDE, _stampede, _stampede_expect),
    "flash_sale": Driven("flash_sale", {"stock": 5, "users": 50}, _stampede, _stampede_expect),
    "constraint_storm": Driven(
        "constraint_storm", {"stock": 100, "requests": 50}, _one_user, _one_user_expect
    ),
    "double_dip": Driven("double_dip", {"stock": 100, "requests": 10}, _one_user, _one_user_expect),
    "mixed_load": Driven(
        "mixed_load",
        {
            "coupons": 3,
            "amount": 100,
            "ops": 50,
            "create_ratio": 0.2,
            "claim_ratio": 0.5,
            "workers": 10,
        },
        _mixed,
        _mixed_expect,
    ),
}


def driven(name: str) -> Driven:
    """The scenario ``name`` as Locust drives it; ``KeyError`` naming those it can drive."""
    try:
        return LOCUST_SCENARIOS[name]
    except KeyError:
        have = ", ".join(LOCUST_SCENARIOS)
        raise KeyError(f"Locust cannot drive {name!r}; it drives {have}") from None
