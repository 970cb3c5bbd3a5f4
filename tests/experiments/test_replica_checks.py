"""The replication checks on hand-made histories: lost claims, evidence, stale reads, windows."""

from __future__ import annotations

from experiments.checks import FinalState
from experiments.history import Op
from experiments.linearizability import check_linearizable
from experiments.replica_checks import (
    lost_acknowledged_claims,
    lost_claims_on_old_primary,
    no_lost_acknowledged_claims,
    stale_reads,
    stale_reads_observed,
    unavailability,
)
from tests.histories import MS, history, op


def state(*claims: tuple[str, str], stock: int = 10) -> FinalState:
    s = FinalState(prefix="c", coupons={"c": (stock, stock - len(claims))})
    s.claims = [(i, u, c) for i, (u, c) in enumerate(claims, 1)]
    return s


def read(op_id: int, t0: int, t1: int, claimed: list[str], stock: int = 10) -> Op:
    value = {"remaining_amount": stock - len(claimed), "claimed_by": claimed}
    return op(op_id, "get", t0, t1, value=value)


def test_no_loss_passes_and_counts_the_acknowledged() -> None:
    h = history(op(1, "claim", 0, 5, user="a"), op(2, "claim", 0, 5, "unavailable", user="b"))
    v = no_lost_acknowledged_claims(h, state(("a", "c")))
    assert v.passed is True
    assert v.figures["acknowledged"] == 1
    assert v.figures["lost_count"] == 0


def test_lost_claims_are_named() -> None:
    h = history(
        op(1, "claim", 0, 5, user="a"),
        op(2, "claim", 6, 9, user="b"),
        op(3, "claim", 6, 9, "unknown", user="c"),  # in flight: not acknowledged, not lost
    )
    v = no_lost_acknowledged_claims(h, state(("a", "c")))
    assert v.passed is False
    assert v.figures["lost"] == [{"op_id": 2, "user": "b", "coupon": "c"}]
    assert "op 2 (b on c)" in v.detail
    assert [o.op_id for o in lost_acknowledged_claims(h, state(("a", "c")))] == [2]


def test_evidence_needs_each_lost_claim_on_the_old_primary_and_not_the_new() -> None:
    h = history(op(1, "claim", 0, 5, user="a"), op(2, "claim", 6, 9, user="b"))
    new = state(("a", "c"))
    lost = lost_acknowledged_claims(h, new)
    assert lost_claims_on_old_primary(lost, state(("a", "c"), ("b", "c")), new).passed is True
    # The old primary never had it: not a loss the failover explains.
    missing = lost_claims_on_old_primary(lost, state(("a", "c")), new)
    assert missing.passed is False
    assert missing.figures["not_on_old_primary"] == [{"op_id": 2, "user": "b", "coupon": "c"}]
    assert lost_claims_on_old_primary(lost, None, new).passed is None  # unreadable: unknown
    assert lost_claims_on_old_primary([], None, new).passed is True


def test_a_read_missing_an_acknowledged_claim_is_stale_with_a_two_op_witness() -> None:
    h = history(
        op(0, "create", 0, 1, amount=10),
        op(1, "claim", 2, 4, user="a"),
        read(2, 10, 12, []),  # began 6 ms after a's claim was acknowledged: stale
        read(3, 3, 5, []),  # concurrent with the claim: may be before it
        read(4, 20, 21, ["a"]),
    )
    found = stale_reads(h, {"c": 10})
    assert [(s["read_op_id"], s["missed_claim_op_id"]) for s in found] == [(2, 1)]
    assert found[0]["primary_at_most"] == 9
    assert found[0]["remaining_read"] == 10
    v = stale_reads_observed(h, {"c": 10})
    assert v.passed is False
    assert v.figures["witness_op_ids"] == [1, 2]
    # The linearizability check flags the same read, with the same two ops.
    lin = check_linearizable(h)
    assert lin.passed is False
    assert sorted(lin.figures["witness_op_ids"]) == [1, 2]


def test_the_amount_is_the_created_one_not_the_table_s() -> None:
    """Issue 25, point 4: created with 10, the final table says 50 (a rewritten row).

    After one acknowledged claim the primary had at most 9 left; a read of 49 is stale.
    Given the table's 50 as the amount, the old count took 49 <= 50 - 1 as fresh.
    """
    h = history(
        op(0, "create", 0, 1, amount=10),
        op(1, "claim", 2, 4, user="a"),
        read(2, 10, 12, ["a"]),
    )
    h.ops[2].value = {"amount": 50, "remaining_amount": 49, "claimed_by": ["a"]}
    table = {"c": 50}
    found = stale_reads(h, table)  # the acknowledged create wins over any figure given
    assert [(s["read_op_id"], s["primary_at_most"]) for s in found] == [(2, 9)]
    assert stale_reads(h) == found  # the history alone names the amount
    assert stale_reads_observed(h, table).passed is False
    # A coupon created outside the history: the plan's figure is the baseline.
    outside = history(op(1, "claim", 2, 4, user="a"), read(2, 10, 12, ["a"]))
    outside.ops[1].value = {"amount": 10, "remaining_amount": 10, "claimed_by": ["a"]}
    assert [s["primary_at_most"] for s in stale_reads(outside, {"c": 10})] == [9]
    assert stale_reads(outside) == []  # no amount known: nothing claimed stale


def test_fresh_reads_are_not_stale_and_linearize() -> None:
    h = history(
        op(0, "create", 0, 1, amount=10),
        op(1, "claim", 2, 4, user="a"),
        read(2, 3, 5, []),
        read(3, 10, 12, ["a"]),
    )
    assert stale_reads(h, {"c": 10}) == []
    assert stale_reads_observed(h, {"c": 10}).passed is True
    assert check_linearizable(h).passed is True


def test_unavailability_runs_from_the_first_failed_op_to_the_first_success_after_promotion() -> (
    None
):
    h = history(
        op(1, "claim", 0, 5, user="a"),
        op(2, "claim", 8, 30, "unavailable", user="b"),  # blocked by the cut, failed at the kill
        op(3, "claim", 31, 33, "unavailable", user="c"),
        op(4, "claim", 36, 38, user="d"),  # after the promotion at 35
    )
    w = unavailability(h, down_ns=30 * MS, promoted_ns=35 * MS)
    assert w is not None
    assert (w.start_ns, w.end_ns) == (8 * MS, 38 * MS)
    assert unavailability(h, down_ns=None, promoted_ns=None) is None
    assert unavailability(h, down_ns=30 * MS, promoted_ns=40 * MS) is None  # no success after
