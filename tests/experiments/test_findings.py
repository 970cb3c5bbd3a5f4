"""Findings excuse exactly what their evidence explains (issue 25, point 1).

Each test is built from the review's own inputs: hand-made histories and final states
judged by the real checks, then by the scenario's judge (``failover.judge_loss``,
``stale_reads.judge_reads``). Before the findings were scoped, an unsafe configuration's
run moved every failure to "findings" and passed; each FAIL and unknown below passed so.
"""

from __future__ import annotations

from functools import partial
from typing import Any

from experiments.checks import FinalState, always_on
from experiments.findings import scope, without
from experiments.history import History, Op
from experiments.linearizability import CHECK_NAME, check_linearizable, started_ops
from experiments.replica_checks import (
    lost_acknowledged_claims,
    lost_claims_on_old_primary,
    no_lost_acknowledged_claims,
    stale_reads_observed,
)
from experiments.result import Verdict, status_of
from experiments.scenarios.failover import judge_loss
from experiments.scenarios.stale_reads import judge_reads, unsafe
from tests import histories

C = "c-1"  # the run's coupon; the prefix "c-" is the run's


# Every op but the setup create runs in the load phase.
op = partial(histories.op, coupon=C, phase="load")


def read(op_id: int, t0: int, t1: int, claimed: list[str], amount: int = 3) -> Op:
    value = {"name": C, "amount": amount, "remaining_amount": amount - len(claimed)}
    return op(op_id, "get", t0, t1, value={**value, "claimed_by": claimed})


def history(*ops: Op) -> History:
    return histories.history(op(0, "create", 0, 1, amount=3, phase="setup"), *ops)


def state(*users: str, amount: int = 3) -> FinalState:
    s = FinalState(prefix="c-", coupons={C: (amount, amount - len(users))})
    s.claims = [(i, u, C) for i, u in enumerate(users, 1)]
    return s


def by_name(verdicts: list[Verdict]) -> dict[str, Verdict]:
    return {v.name: v for v in verdicts}


# -- failover: asynchronous replication lost acknowledged claims -------------------------


def failover_verdicts(h: History, survivor: FinalState, old: FinalState) -> list[Verdict]:
    """What the failover run's checks say of ``h`` (the pipeline's order, the real checks)."""
    lost = lost_acknowledged_claims(h, survivor)
    return [
        *always_on(h, survivor, allow_unavailable=True, expect_no_timeouts=False),
        check_linearizable(started_ops(h)),
        no_lost_acknowledged_claims(h, survivor),
        lost_claims_on_old_primary(lost, old, survivor),
    ]


def test_a_lost_claim_alone_is_the_finding_and_the_run_passes() -> None:
    """The control: u1 acknowledged, on the old primary only. Its loss explains both
    failures it causes (claims_match_history 1 ok vs 0 rows), and nothing stands."""
    h = history(op(1, "claim", 10, 12, user="u1"))
    verdicts = failover_verdicts(h, state(), state("u1"))
    assert status_of(verdicts) == "FAIL"
    kept, findings = judge_loss(h, state(), verdicts)
    assert status_of(kept) == "pass", [(v.name, v.detail) for v in kept if v.passed is not True]
    assert set(findings) == {"no_lost_acknowledged_claims", "claims_match_history"}
    got = by_name(kept)
    assert got["loss_caught"].passed is True
    assert got["claims_match_history"].figures["evidence_op_ids"] == [1]
    assert got["claims_match_history"].figures["without_evidence"]["passed"] is True


def test_a_refusal_with_stock_left_is_not_excused_by_a_lost_claim() -> None:
    """Issue 25, point 1: u1's acknowledged claim is lost; u2 is refused no_stock with 2
    of 3 left. Linearizability fails on u2's op, with u1 erased too: it stands."""
    h = history(op(1, "claim", 10, 12, user="u1"), op(2, "claim", 20, 22, "no_stock", "u2"))
    kept, findings = judge_loss(h, state(), failover_verdicts(h, state(), state("u1")))
    assert status_of(kept) == "FAIL"
    lin = by_name(kept)[CHECK_NAME]
    assert lin.passed is False
    assert lin.finding is None
    assert "not explained by the finding" in lin.detail
    assert CHECK_NAME not in findings
    assert "no_lost_acknowledged_claims" in findings  # the loss itself is still named


def test_a_survivor_row_for_a_refused_user_is_not_hidden() -> None:
    """Issue 25, point 1: the survivor holds a row for u2, whose only claim was answered
    already_claimed; u1's acknowledged claim is lost. By count the rows agree (1 ok, 1
    row), yet no linearization refuses u2 before any claim of theirs: it stands."""
    h = history(op(1, "claim", 10, 12, user="u1"), op(2, "claim", 20, 22, "already_claimed", "u2"))
    survivor = state("u2")
    kept, findings = judge_loss(h, survivor, failover_verdicts(h, survivor, state("u1", "u2")))
    assert status_of(kept) == "FAIL"
    assert by_name(kept)[CHECK_NAME].finding is None
    assert by_name(kept)[CHECK_NAME].passed is False
    assert CHECK_NAME not in findings


def test_rows_no_claim_explains_stand_beside_the_loss() -> None:
    """Two survivor rows no acknowledged or unknown claim made: with the lost claim
    erased, claims_match_history still fails (0 ok, 2 rows): not the finding's."""
    h = history(op(1, "claim", 10, 12, user="u1"))
    survivor = state("x1", "x2")
    kept, findings = judge_loss(h, survivor, failover_verdicts(h, survivor, state("u1")))
    assert status_of(kept) == "FAIL"
    rows = by_name(kept)["claims_match_history"]
    assert rows.passed is False
    assert rows.finding is None
    assert "claims_match_history" not in findings


def test_an_unknown_linearizability_verdict_is_never_excused() -> None:
    """Issue 25, point 1: ``linearizable`` unknown beside a lost claim -> passed."""
    h = history(op(1, "claim", 10, 12, user="u1"))
    verdicts = [
        Verdict(CHECK_NAME, None, "search gave up") if v.name == CHECK_NAME else v
        for v in failover_verdicts(h, state(), state("u1"))
    ]
    kept, findings = judge_loss(h, state(), verdicts)
    assert status_of(kept) == "unknown"
    assert by_name(kept)[CHECK_NAME].passed is None
    assert CHECK_NAME not in findings


def test_a_loss_without_its_evidence_on_the_old_primary_is_not_caught() -> None:
    """The lost claim is not a row of the old primary either: the loss is not shown to
    be replication's, and ``loss_caught`` fails."""
    h = history(op(1, "claim", 10, 12, user="u1"))
    kept, _ = judge_loss(h, state(), failover_verdicts(h, state(), state()))
    assert by_name(kept)["loss_caught"].passed is False
    assert status_of(kept) == "FAIL"


# -- stale reads: a lagging standby served old states ------------------------------------


def reads_verdicts(h: History) -> list[Verdict]:
    return [
        *always_on(h, state(*_claimed(h)), allow_unavailable=True, expect_no_timeouts=False),
        check_linearizable(started_ops(h)),
        stale_reads_observed(h, {C: 3}),
    ]


def _claimed(h: History) -> list[str]:
    return [str(o.user) for o in h.ops if o.kind == "claim" and o.result == "ok"]


def judged(h: History, verdicts: list[Verdict], mode: str = "async") -> tuple[list[Verdict], Any]:
    kept, figures = judge_reads(h, {C: 3}, verdicts, mode, "standby", 0.2)
    return kept, figures.get("findings", {})


def test_a_stale_read_alone_is_the_finding_and_the_run_passes() -> None:
    """The control: u1 acknowledged at 12 ms, a read invoked at 20 ms misses it."""
    h = history(op(1, "claim", 10, 12, user="u1"), read(2, 20, 22, []))
    kept, findings = judged(h, reads_verdicts(h))
    assert status_of(kept) == "pass", [(v.name, v.detail) for v in kept if v.passed is not True]
    assert set(findings) == {"stale_reads", CHECK_NAME}
    assert by_name(kept)["stale_reads_caught"].passed is True
    assert by_name(kept)[CHECK_NAME].figures["evidence_op_ids"] == [2]


def test_no_stale_read_and_a_linearizability_failure_stands() -> None:
    """Issue 25, point 1: ``stale_reads`` 0 plus ``linearizable`` FAIL ended passed. A
    read shows a claimant no claim made: no stale read by counting, nothing to excuse."""
    h = history(op(1, "claim", 10, 12, user="u1"), read(2, 20, 22, ["u1", "ghost"]))
    verdicts = reads_verdicts(h)
    assert by_name(verdicts)["stale_reads"].passed is True
    kept, findings = judged(h, verdicts)
    assert status_of(kept) == "FAIL"
    assert by_name(kept)[CHECK_NAME].finding is None
    assert findings == {}


def test_no_stale_read_and_an_unknown_linearizability_verdict_is_unknown() -> None:
    """Issue 25, point 1: ``stale_reads`` 0 plus ``linearizable`` unknown ended passed."""
    h = history(op(1, "claim", 10, 12, user="u1"), read(2, 20, 22, ["u1"]))
    verdicts = [
        Verdict(CHECK_NAME, None, "search gave up") if v.name == CHECK_NAME else v
        for v in reads_verdicts(h)
    ]
    kept, findings = judged(h, verdicts)
    assert status_of(kept) == "unknown"
    assert findings == {}


def test_a_stale_read_does_not_excuse_another_reads_violation() -> None:
    """One read is stale (the finding's evidence); another shows a claimant no claim
    made. With the stale read dropped, linearizability still fails: it stands."""
    h = history(
        op(1, "claim", 10, 12, user="u1"),
        read(2, 20, 22, []),
        read(3, 30, 32, ["u1", "ghost"]),
    )
    kept, findings = judged(h, reads_verdicts(h))
    assert status_of(kept) == "FAIL"
    lin = by_name(kept)[CHECK_NAME]
    assert lin.passed is False
    assert lin.finding is None
    assert "stale_reads" in findings
    assert CHECK_NAME not in findings


def test_stale_reads_with_an_unknown_check_are_not_caught() -> None:
    h = history(op(1, "claim", 10, 12, user="u1"), read(2, 20, 22, []))
    verdicts = [
        Verdict(CHECK_NAME, None, "search gave up") if v.name == CHECK_NAME else v
        for v in reads_verdicts(h)
    ]
    kept, _ = judged(h, verdicts)
    assert by_name(kept)["stale_reads_caught"].passed is False
    assert status_of(kept) == "FAIL"


def test_a_safe_configuration_excuses_no_stale_read() -> None:
    """remote_apply acknowledges a claim once the standby applied it, and the primary
    serves its own reads: a stale read there is the system's failure, no finding (it
    was excused on every standby before, whatever the mode)."""
    assert unsafe("async", "standby")
    assert unsafe("sync", "standby")
    assert not unsafe("remote_apply", "standby")
    assert not unsafe("async", "primary")
    h = history(op(1, "claim", 10, 12, user="u1"), read(2, 20, 22, []))
    for mode, read_from in (("remote_apply", "standby"), ("async", "primary")):
        kept, figures = judge_reads(h, {C: 3}, reads_verdicts(h), mode, read_from, 0.2)
        assert status_of(kept) == "FAIL", (mode, read_from)
        assert not any(v.finding for v in kept)
        assert "findings" not in figures


# -- the mechanism -----------------------------------------------------------------------


def test_scope_marks_only_rechecked_failures_and_never_an_unknown() -> None:
    evidence = [op(1, "claim", 10, 12, user="u1")]
    verdicts = [
        Verdict("ev", False, "the anomaly"),
        Verdict("explained", False, "x"),
        Verdict("unexplained", False, "y"),
        Verdict("unnamed", False, "z"),
        Verdict("unsure", None, "?"),
    ]
    kept, findings = scope(
        verdicts,
        finding="f",
        evidence_check="ev",
        evidence=evidence,
        rechecks={
            "explained": lambda: Verdict("explained", True, "ok without"),
            "unexplained": lambda: Verdict("unexplained", False, "still"),
            "unsure": lambda: Verdict("unsure", True, "never asked"),
        },
    )
    assert set(findings) == {"ev", "explained"}
    assert [v.label for v in kept] == ["finding", "finding", "FAIL", "FAIL", "unknown"]
    # No evidence: nothing is excused, not even the evidence check's own failure.
    kept, findings = scope(verdicts, finding="f", evidence_check="ev", evidence=[], rechecks={})
    assert findings == {}
    assert status_of(kept) == "FAIL"


def test_without_erases_a_claim_and_its_traces_in_reads() -> None:
    h = history(op(1, "claim", 10, 12, user="u1"), read(2, 20, 22, ["u1"]))
    erased = without(h, [h.ops[1]], "erase")
    assert [o.op_id for o in erased.ops] == [0, 2]
    assert erased.ops[1].value == {"name": C, "amount": 3, "remaining_amount": 3, "claimed_by": []}
    assert h.ops[2].value is not None
    assert h.ops[2].value["claimed_by"] == ["u1"]
    assert [o.result for o in without(h, [h.ops[1]], "unknown").ops] == ["ok", "unknown", "ok"]
    assert [o.op_id for o in without(h, [h.ops[2]], "drop").ops] == [0, 1]
