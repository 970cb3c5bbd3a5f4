"""A scenario's expectations from its plan: counts, final stock, claim rows, result sets."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from experiments.checks._compose import check, ops_on, verdict_of
from experiments.checks.state import FinalState
from experiments.history import History
from experiments.result import Verdict

__all__ = [
    "at_least",
    "expected_counts",
    "remaining_equals",
    "results_within",
    "rows_equal",
    "state_equals",
]


def expected_counts(
    history: History,
    kind: str,
    expected: Mapping[str, int],
    *,
    name: str | None = None,
    coupons: Iterable[str] | None = None,
    phase: str | None = None,
) -> Verdict:
    """The ``kind`` ops ended exactly as ``expected`` ({result: count}), nothing else."""
    label = name or f"{kind}_counts"

    @check(label)
    def run() -> Verdict:
        ops = [
            o
            for o in ops_on(history, coupons)
            if o.kind == kind and (phase is None or o.phase == phase)
        ]
        got: dict[str, int] = {}
        for o in ops:
            got[o.result] = got.get(o.result, 0) + 1
        want = {k: v for k, v in expected.items() if v}
        passed = got == want
        detail = f"{kind}: got {dict(sorted(got.items()))}, expected {dict(sorted(want.items()))}"
        return Verdict(label, passed, detail, {"got": got, "expected": want})

    return run()


def state_equals(
    name: str,
    state: FinalState,
    coupon: str,
    expected: int,
    getter: Callable[[FinalState, str], int | None],
    what: str,
) -> Verdict:
    """``getter(state, coupon)`` (a figure of the tables) equals ``expected`` (the plan's).

    ``what`` names the figure in the detail and the figures (``remaining``, ``rows``).
    """

    @check(name)
    def run(state: FinalState) -> Verdict:
        got = getter(state, coupon)
        return Verdict(
            name,
            got == expected,
            f"{coupon}: {what} {got}, expected {expected}",
            {what: got, "expected": expected},
        )

    return run(state)


def remaining_equals(
    state: FinalState, coupon: str, expected: int, *, name: str = "final_stock"
) -> Verdict:
    """The coupon's remaining stock is the plan's figure."""
    return state_equals(name, state, coupon, expected, FinalState.remaining, "remaining")


def rows_equal(
    state: FinalState, coupon: str, expected: int, *, name: str = "claim_rows"
) -> Verdict:
    """The coupon has the plan's number of claim rows."""
    return state_equals(name, state, coupon, expected, FinalState.claim_rows, "rows")


def results_within(
    history: History,
    kind: str,
    allowed: Iterable[str],
    *,
    name: str | None = None,
    coupons: Iterable[str] | None = None,
) -> Verdict:
    """Every ``kind`` op ended with one of ``allowed`` (counts not fixed)."""
    label = name or f"{kind}_results"
    allowed_set = frozenset(allowed)

    @check(label)
    def run() -> Verdict:
        ops = [o for o in ops_on(history, coupons) if o.kind == kind]
        bad = [f"op {o.op_id} ended {o.result}" for o in ops if o.result not in allowed_set]
        return verdict_of(
            label,
            bad,
            f"all {len(ops)} {kind} ops ended in {sorted(allowed_set)}",
            {"ops": len(ops), "violations": len(bad)},
        )

    return run()


def at_least(history: History, kind: str, result: str, minimum: int, *, name: str) -> Verdict:
    """At least ``minimum`` ``kind`` ops ended ``result`` (the plan meant them to)."""

    @check(name)
    def run() -> Verdict:
        got = sum(1 for o in history if o.kind == kind and o.result == result)
        return Verdict(
            name,
            got >= minimum,
            f"{got} {kind} ops ended {result}, expected at least {minimum}",
            {"count": got, "minimum": minimum},
        )

    return run()
