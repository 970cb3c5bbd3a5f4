"""The linearizability checker on hand-made histories, simulated ones and a time bound."""

from __future__ import annotations

import random
from typing import Any

import pytest

from experiments.history import History, Op, OpKind, ResultKind
from experiments.linearizability import (
    MAX_CLOCK_UNCERTAINTY_MS,
    check_linearizable,
    simulate_history,
)
from tests.histories import MS, history, op, setup_create


class _Builder:
    """Ops on one coupon ``c`` with times in microseconds, ids in the order added."""

    def __init__(self) -> None:
        self.history = History(origin_ns=0)

    def op(
        self,
        kind: OpKind,
        start: int,
        end: int,
        result: ResultKind,
        *,
        user: str | None = None,
        amount: int | None = None,
        value: dict[str, Any] | None = None,
        coupon: str = "c",
    ) -> int:
        op_id = len(self.history)
        timed = op(
            op_id,
            kind,
            start,
            end,
            result,
            user,
            coupon=coupon,
            amount=amount,
            value=value,
            unit=1000,
        )
        self.history.append(timed)
        return op_id

    def create(self, start: int, end: int, result: ResultKind = "ok", amount: int = 1) -> int:
        return self.op("create", start, end, result, amount=amount)

    def claim(self, start: int, end: int, result: ResultKind, user: str) -> int:
        return self.op("claim", start, end, result, user=user)

    def get(
        self, start: int, end: int, result: ResultKind, remaining: int, claimed: list[str]
    ) -> int:
        value = {"remaining_amount": remaining, "claimed_by": claimed}
        return self.op("get", start, end, result, value=value if result == "ok" else None)


def _check(b: _Builder, **kwargs: Any) -> tuple[bool | None, dict[str, Any]]:
    verdict = check_linearizable(b.history, time_limit_s=5, **kwargs)
    assert verdict.name == "linearizable"
    return verdict.passed, verdict.figures


# -- valid histories -----------------------------------------------------------------


def test_concurrent_successes_fit_in_any_order() -> None:
    b = _Builder()
    b.create(0, 10, amount=2)
    # Completion order is the reverse of invocation order: still one valid order.
    b.claim(20, 60, "ok", "a")
    b.claim(21, 50, "ok", "b")
    b.claim(22, 40, "no_stock", "c")
    b.get(30, 70, "ok", 0, ["b", "a"])
    passed, figures = _check(b)
    assert passed is True
    assert figures["partitions"] == 1
    assert figures["ops_checked"] == 5


def test_indeterminate_claim_that_took_effect() -> None:
    b = _Builder()
    b.create(0, 10, amount=1)
    b.claim(20, 30, "unknown", "a")
    b.claim(40, 50, "no_stock", "b")  # only explained by a's claim having landed
    b.get(60, 70, "ok", 0, ["a"])
    assert _check(b)[0] is True


def test_indeterminate_claim_that_did_not_take_effect() -> None:
    b = _Builder()
    b.create(0, 10, amount=1)
    b.claim(20, 30, "unavailable", "a")
    b.claim(40, 50, "ok", "b")
    b.get(60, 70, "ok", 0, ["b"])
    assert _check(b)[0] is True


def test_invalid_and_lost_reads_are_ignored() -> None:
    b = _Builder()
    b.create(0, 10, amount=1)
    b.claim(20, 30, "invalid", "")
    b.op("get", 20, 30, "server_error")
    b.claim(40, 50, "ok", "a")
    assert _check(b)[0] is True


def test_coupon_created_outside_the_history() -> None:
    b = _Builder()
    b.claim(0, 10, "ok", "a")
    b.claim(20, 30, "no_stock", "b")
    assert _check(b, initial={"c": 1})[0] is True
    assert _check(b)[0] is False  # without it the coupon never existed


# -- invalid histories ---------------------------------------------------------------


def test_two_successes_on_stock_one() -> None:
    b = _Builder()
    create = b.create(0, 10, amount=1)
    first = b.claim(20, 40, "ok", "a")
    second = b.claim(21, 41, "ok", "b")
    for user in "cdefg":
        b.claim(22, 42, "no_stock", user)
    passed, figures = _check(b)
    assert passed is False
    assert figures["coupon"] == "c"
    assert figures["witness_op_ids"] == [create, first, second]


def test_success_after_a_completed_no_stock() -> None:
    b = _Builder()
    create = b.create(0, 10, amount=2)
    ok_a = b.claim(20, 30, "ok", "a")
    b.claim(20, 25, "unknown", "x")  # may have taken the last unit: explains the refusal
    refused = b.claim(40, 50, "no_stock", "b")
    late = b.claim(60, 70, "ok", "c")  # but then nothing is left for this success
    passed, figures = _check(b)
    assert passed is False
    # The core: a refusal (stock gone) then a success (stock left), whatever else did.
    assert figures["witness_op_ids"] == [refused, late]
    assert figures["witness_minimal"] is True
    assert create not in figures["witness_op_ids"]
    assert ok_a not in figures["witness_op_ids"]


def test_success_after_no_stock_with_a_concurrent_explanation_is_fine() -> None:
    b = _Builder()
    b.create(0, 10, amount=2)
    b.claim(20, 30, "ok", "a")
    b.claim(35, 65, "ok", "c")  # overlaps the refusal: may have taken the last unit
    b.claim(40, 50, "no_stock", "b")
    assert _check(b)[0] is True


def test_not_found_after_the_create_completed() -> None:
    b = _Builder()
    create = b.create(0, 10, amount=5)
    b.claim(5, 15, "not_found", "early")  # overlaps the create: fine
    late = b.claim(20, 30, "not_found", "a")
    passed, figures = _check(b)
    assert passed is False
    assert figures["witness_op_ids"] == [create, late]


def test_double_success_by_one_user() -> None:
    b = _Builder()
    b.create(0, 10, amount=5)
    first = b.claim(20, 30, "ok", "a")
    second = b.claim(21, 31, "ok", "a")
    passed, figures = _check(b)
    assert passed is False
    assert figures["witness_op_ids"] == [first, second]


def test_double_claim_hidden_behind_an_unknown_outcome() -> None:
    b = _Builder()
    b.create(0, 10, amount=5)
    b.claim(20, 30, "unknown", "a")
    b.claim(40, 50, "ok", "a")
    b.get(60, 70, "ok", 3, ["a"])  # two units gone, one claimant: no order explains it
    passed, figures = _check(b)
    assert passed is False
    assert set(figures["witness_op_ids"]) <= {0, 2, 3}


def test_get_whose_remaining_contradicts_every_order() -> None:
    b = _Builder()
    b.create(0, 10, amount=3)
    b.claim(20, 40, "ok", "a")
    late_b = b.claim(20, 40, "ok", "b")
    # Counts agree (3 - 1 = 2), but b's claim ended before this read began: a stale
    # read, refuted by counting before any search, with the two ops behind it.
    read = b.get(50, 60, "ok", 2, ["a"])
    passed, figures = _check(b)
    assert passed is False
    assert figures["witness_op_ids"] == [late_b, read]
    assert figures["witness_minimal"] is True


def test_failure_is_reported_on_the_failing_coupon_only() -> None:
    history = simulate_history(3, coupons=3, ops=600, stock=50)
    bad = next(o for o in history.ops if o.coupon == "c1" and o.result == "no_stock")
    bad.result = "ok"  # a success past the stock: a lost decrement
    verdict = check_linearizable(history, time_limit_s=5)
    assert verdict.passed is False
    assert verdict.figures["failed_coupons"] == ["c1"]
    assert verdict.figures["coupon"] == "c1"
    # The create and the 51 successes that a stock of 50 cannot all have served.
    witness = verdict.figures["witness_op_ids"]
    assert len(witness) == 52
    assert {history.ops[i].coupon for i in witness} == {"c1"}


# -- simulated histories and the time bound -------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_simulated_histories_pass(seed: int) -> None:
    history = simulate_history(seed, coupons=4, ops=2000, stock=100, unknown=0.02)
    verdict = check_linearizable(history, time_limit_s=10)
    assert verdict.passed is True, verdict.detail
    assert verdict.figures["partitions"] == 4


@pytest.mark.parametrize("seed", range(8))
def test_corrupted_simulated_histories_fail(seed: int) -> None:
    """Flip one claim's outcome in a valid history: each flip below is a real violation."""
    history = simulate_history(seed, ops=400, stock=20, users=200, stampede=seed % 2 == 0)
    rng = random.Random(seed)
    ok_claims = [o for o in history.ops if o.kind == "claim" and o.result == "ok"]
    refusals = [o for o in history.ops if o.kind == "claim" and o.result == "no_stock"]
    # One more success than the stock allows, or one success fewer than the reads saw.
    victim = rng.choice(refusals) if seed % 4 < 2 else rng.choice(ok_claims)
    victim.result = "ok" if victim.result == "no_stock" else "no_stock"
    verdict = check_linearizable(history, time_limit_s=5)
    assert verdict.passed is False, verdict.detail


def test_large_history_with_a_tiny_time_bound_is_unknown_not_pass() -> None:
    history = simulate_history(7, coupons=10, ops=10_000, stock=200, unknown=0.02)
    verdict = check_linearizable(history, time_limit_s=0.001)
    assert verdict.passed is None
    assert verdict.label == "unknown"
    assert verdict.figures["unknown_coupons"]


def test_hard_invalid_history_with_a_tiny_time_bound_is_unknown_not_pass() -> None:
    # 40 concurrent successes, and two reads in their midst that each saw 20
    # claimants, sets that differ by one user each way: impossible, as claimants only
    # grow, but no count shows it and only exhausting the orders refutes it.
    b = _Builder()
    b.create(0, 10, amount=40)
    users = [f"u{k}" for k in range(40)]
    for user in users:
        b.claim(20, 100, "ok", user)
    b.get(20, 100, "ok", 20, users[0:20])
    b.get(20, 100, "ok", 20, users[1:21])
    verdict = check_linearizable(b.history, time_limit_s=0.05)
    assert verdict.passed is None
    assert verdict.figures["states_explored"] > 0


def test_read_whose_count_contradicts_its_claimants() -> None:
    b = _Builder()
    create = b.create(0, 10, amount=40)
    users = [f"u{k}" for k in range(40)]
    for user in users:
        b.claim(20, 100, "ok", user)
    read = b.get(20, 100, "ok", 21, users[:20])  # 20 claimants leave 20, not 21
    passed, figures = _check(b)
    assert passed is False
    assert figures["witness_op_ids"] == [create, read]


# -- the check in the pipelines and on the timeline ------------------------------------


def test_ops_never_started_are_left_out() -> None:
    from experiments.linearizability import started_ops
    from experiments.runner import NOT_STARTED

    b = _Builder()
    b.create(0, 10, amount=1)
    b.claim(20, 30, "no_stock", "a")  # only explained by a claim landing before it
    ghost = b.claim(15, 15, "unknown", "b")
    b.history.ops[ghost].message = NOT_STARTED
    # As "maybe happened" the ghost explains the no_stock; it never ran, so it must not.
    assert _check(b)[0] is True
    kept = started_ops(b.history)
    assert [o.op_id for o in kept.ops] == [0, 1]
    assert kept.origin_ns == b.history.origin_ns
    assert check_linearizable(kept, time_limit_s=5).passed is False


@pytest.mark.chaos
@pytest.mark.parametrize("layer", ["service", "http"])
def test_lab_pipeline_adds_linearizable_and_no_leaks(db_url: str, layer: str) -> None:
    from experiments import scenarios

    result = scenarios.run("flash_sale", database_url=db_url, layer=layer, users=20, stock=3)
    lin = result.verdict("linearizable")
    assert lin.passed is True, lin.detail
    # Setup creates are in the history, so every claim's coupon exists in it.
    assert lin.figures["ops_checked"] == len(result.history.ops) == 21
    leaks = result.verdict("no_leaks")
    assert leaks.passed is True, leaks.detail
    assert leaks.figures["pool_idle"] is True
    assert leaks.figures["backends_left"] == 0
    assert [v.name for v in result.verdicts].count("linearizable") == 1


@pytest.mark.chaos
def test_fault_pipeline_adds_linearizable(db_url: str) -> None:
    from experiments import scenarios

    result = scenarios.run("partial_failure", database_url=db_url)
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    lin = result.verdict("linearizable")
    assert lin.passed is True
    assert lin.figures["time_limit_s"] == 10.0
    assert [v.name for v in result.verdicts].count("no_leaks") == 1


def test_timeline_draws_the_witness_highlighted() -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.collections import LineCollection

    from experiments import report

    b = _Builder()
    b.create(0, 10, amount=1)
    b.claim(20, 40, "ok", "a")
    b.claim(25, 45, "ok", "b")
    verdict = check_linearizable(b.history, time_limit_s=5)
    assert verdict.passed is False
    witness = verdict.figures["witness_op_ids"]
    fig = report.timeline(b.history, highlight=witness)
    ax = fig.axes[0]
    marked = [c for c in ax.collections if isinstance(c, LineCollection)][1:]
    assert len(marked) == 1
    assert len(marked[0].get_segments()) == len(witness) > 0
    labels = ax.get_legend_handles_labels()[1]
    assert f"witness ({len(witness)} ops)" in labels
    plain = report.timeline(b.history)
    assert len([c for c in plain.axes[0].collections if isinstance(c, LineCollection)]) == 1
    import matplotlib.pyplot as plt

    plt.close(fig)
    plt.close(plain)


# -- every field of a read is modelled (issue 25, point 4) -----------------------------


def _read(b: _Builder, start: int, end: int, value: dict[str, Any]) -> int:
    return b.op("get", start, end, "ok", value=value)


def test_a_read_of_an_amount_never_created_fails() -> None:
    # Created with 5; the read says amount 50 with the stock and claimants of the 5
    # (remaining 4, one claim). The old model ignored a read's amount and passed.
    b = _Builder()
    create = b.create(0, 10, amount=5)
    b.claim(20, 30, "ok", "a")
    read = _read(b, 40, 50, {"amount": 50, "remaining_amount": 4, "claimed_by": ["a"]})
    passed, figures = _check(b)
    assert passed is False
    assert figures["witness_op_ids"] == [create, read]
    b.history.ops[read].value = {"amount": 5, "remaining_amount": 4, "claimed_by": ["a"]}
    assert _check(b)[0] is True


def test_a_read_amount_the_search_rules_out() -> None:
    # Two creates of unknown outcome, 5 and 50: by counting alone a read of amount 50
    # with 5 left fits (5 - 0 = 5), but no one state has both; the search refutes it.
    b = _Builder()
    b.create(0, 10, "unknown", amount=5)
    b.create(0, 10, "unknown", amount=50)
    read = _read(b, 40, 50, {"amount": 50, "remaining_amount": 50, "claimed_by": []})
    assert _check(b)[0] is True  # the 50 may have won
    b.history.ops[read].value = {"amount": 50, "remaining_amount": 5, "claimed_by": []}
    passed, figures = _check(b)
    assert passed is False
    assert figures["stuck_op_id"] == read


def test_a_read_listing_a_claimant_twice_fails() -> None:
    # The old model took claimed_by as a set: ["a", "a"] was {"a"}, and passed.
    b = _Builder()
    b.create(0, 10, amount=5)
    b.claim(20, 30, "ok", "a")
    read = _read(b, 40, 50, {"amount": 5, "remaining_amount": 4, "claimed_by": ["a", "a"]})
    passed, figures = _check(b)
    assert passed is False
    assert read in figures["witness_op_ids"]
    assert "twice" in check_linearizable(b.history).detail


# -- ops of one process keep their order: one clock (issue 25, point 2) -------------------


def _clocked(*ops: tuple[str, str, int, int, ResultKind, str | None]) -> History:
    """A setup create of stock 1 on the master's clock, then ``(phase, kind, invoke ms,
    complete ms, result, user)`` ops on the processes' clocks (offsets corrected)."""
    timed = [
        op(i, kind, t0, t1, result, user, phase=phase)
        for i, (phase, kind, t0, t1, result, user) in enumerate(ops)
    ]
    return history(setup_create(), *timed)


def _widened(history: History, clocks: dict[str, int]) -> History:
    """Every op widened by its process's uncertainty, one interval each (the old merge)."""
    out = History(origin_ns=0)
    for o in history.ops:
        u = clocks.get(o.phase or "", 0)
        out.append(
            Op(
                o.op_id,
                o.worker,
                o.kind,
                o.coupon,
                user=o.user,
                amount=o.amount,
                invoke_ns=o.invoke_ns - u,
                complete_ns=o.complete_ns + u,
                result=o.result,
                phase=o.phase,
            )
        )
    return out


def test_one_process_keeps_its_own_order_whatever_the_widening() -> None:
    # The input: one worker, sequential ops, u1 refused no_stock at 100 ms,
    # then u2 ok at 110 ms on stock 1; a 20 ms round trip is +-10 ms of uncertainty.
    history = _clocked(
        ("locust-0", "claim", 100, 105, "no_stock", "u1"),
        ("locust-0", "claim", 110, 115, "ok", "u2"),
    )
    clocks = {"locust-0": 10 * MS}
    assert check_linearizable(_widened(history, clocks)).passed is True  # the old way
    verdict = check_linearizable(history, clocks=clocks)
    assert verdict.passed is False, verdict.detail
    assert verdict.figures["clock_widening_ms"] == {"locust-0": 10.0}


def test_between_processes_the_widening_stands() -> None:
    # The same two answers from two processes, 5 ms apart, each clock +-10 ms: either
    # may have come first in real time, so the history is linearizable.
    history = _clocked(
        ("locust-0", "claim", 100, 105, "no_stock", "u1"),
        ("locust-1", "claim", 110, 115, "ok", "u2"),
    )
    clocks = {"locust-0": 10 * MS, "locust-1": 10 * MS}
    assert check_linearizable(history, clocks=clocks).passed is True
    # Apart by more than both uncertainties, the order is known again.
    apart = _clocked(
        ("locust-0", "claim", 100, 105, "no_stock", "u1"),
        ("locust-1", "claim", 130, 135, "ok", "u2"),
    )
    assert check_linearizable(apart, clocks=clocks).passed is False


def test_a_stale_read_on_one_clock_is_caught_by_counting() -> None:
    history = _clocked(
        ("locust-0", "claim", 100, 105, "ok", "u1"),
        ("locust-0", "get", 107, 108, "ok", None),
    )
    history.ops[-1].value = {"amount": 1, "remaining_amount": 1, "claimed_by": []}
    clocks = {"locust-0": 10 * MS}
    assert check_linearizable(_widened(history, clocks)).passed is True  # the old way
    verdict = check_linearizable(history, clocks=clocks)
    assert verdict.passed is False
    assert "stale read" in verdict.detail


# -- the clock uncertainty is bounded (issue 25, point 2) ---------------------------------


def test_past_the_bound_the_verdict_is_unknown_never_a_pass() -> None:
    # Ops 800 ms apart on two processes: no stock was taken before u1's refusal. A
    # +-2 s clock (a 4 s round trip) would excuse it: the check refuses to widen that far.
    history = _clocked(
        ("locust-0", "claim", 100, 105, "no_stock", "u1"),
        ("locust-1", "claim", 900, 905, "ok", "u2"),
    )
    clocks: dict[str, int | None] = {"locust-0": 1 * MS, "locust-1": 2_000 * MS}
    assert check_linearizable(
        _widened(history, {"locust-0": 1 * MS, "locust-1": 2_000 * MS})
    ).passed
    verdict = check_linearizable(history, clocks=clocks)
    assert verdict.passed is None
    assert verdict.label == "unknown"
    assert verdict.figures["clocks_past_bound"] == ["locust-1"]
    assert verdict.figures["clock_widening_ms"] == {"locust-0": 1.0, "locust-1": 2000.0}
    assert verdict.figures["max_clock_uncertainty_ms"] == MAX_CLOCK_UNCERTAINTY_MS
    assert "locust-1 +-2000.000 ms" in verdict.detail
    # Within a bound, the figure is the widening used, and the detail says it.
    assert check_linearizable(history, clocks=clocks, max_clock_uncertainty_ms=2_000).passed
    tight = check_linearizable(history, clocks={"locust-0": 1 * MS, "locust-1": 25 * MS})
    assert tight.passed is False  # 800 ms apart, +-26 ms: the order is known
    assert "locust-0 +-1.000 ms, locust-1 +-25.000 ms" in tight.detail


def test_an_unmeasured_clock_is_unknown_and_an_idle_one_is_not_judged() -> None:
    history = _clocked(("locust-0", "claim", 100, 105, "ok", "u1"))
    unmeasured = check_linearizable(history, clocks={"locust-0": None})
    assert unmeasured.passed is None
    assert "locust-0 not measured" in unmeasured.detail
    # A process that timed none of the ops widens nothing and is not judged.
    idle = check_linearizable(history, clocks={"locust-0": 1 * MS, "locust-9": None})
    assert idle.passed is True, idle.detail
    assert idle.figures["clock_widening_ms"] == {"locust-0": 1.0}


@pytest.mark.parametrize(
    ("clocks", "bound", "message"),
    [
        ({"locust-0": -1}, 25.0, "never negative"),
        ({"locust-0": 1}, -1.0, "must be >= 0"),
        ({"locust-0": 1}, float("nan"), "must be >= 0"),
    ],
)
def test_a_bad_clock_figure_is_a_clear_error(
    clocks: dict[str, int | None], bound: float, message: str
) -> None:
    history = _clocked(("locust-0", "claim", 100, 105, "ok", "u1"))
    with pytest.raises(ValueError, match=message):
        check_linearizable(history, clocks=clocks, max_clock_uncertainty_ms=bound)
