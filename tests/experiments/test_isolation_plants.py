"""The isolation scenario's detection matrix: planted implementations its checker must catch.

Each plant goes in through the scenario's own seams (``bundle_claim``, ``dashboard_read``,
registered in ``coupon_core.bundles``) and must turn a forbidden cell's verdict to FAIL
(not pass, not a finding), naming the anomaly; the same cells on the same seeds with the
real implementation pass.

- A bundle claimed in two transactions (each half all or none, the pair not). Two
  anomalies, each named by the checker and each forbidden in every dashboard cell but
  ``per_statement`` at READ COMMITTED (which allows read skew and shows it anyway):
  G-single (read skew, a fractured read): a one-statement read between the two commits
  sees the user on the first half's coupons and not on the second's: a wr edge from the
  bundle (the read saw its append to a first-half coupon) and an rw edge back (it read a
  second-half coupon's version before the bundle's append), one anti-dependency in the
  cycle. Not G1b: the bundle appends once per coupon, so the read saw that append's
  final value; not G1a: both halves committed. And G0 (a write cycle, the bundle's
  atomicity lost between writers): two split bundles whose halves interleave are ordered
  one way on a coupon of one half and the other way on a coupon of the other half, ww
  edges both ways. Lost update would need a read-modify-write the history does not
  record (a bundle's append reads nothing), so the checker cannot, and must not, name it.
- A dashboard read done statement by statement outside any transaction: each statement
  is its own snapshot whatever the service's level, so at REPEATABLE READ and
  SERIALIZABLE, where the one transaction's snapshot should serve every statement, it
  reads a bundle half applied: G-single again, forbidden at both levels.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from coupon_core.bundles import (
    BUNDLE_CLAIMS,
    MULTI_READS,
    claim_bundle,
    register_bundle_claim,
    register_multi_read,
    statement_by_statement,
)
from coupon_core.strategies import Conn, FaultHook
from experiments import scenarios
from experiments.result import Result

pytestmark = pytest.mark.chaos

SPLIT = "test:split_bundle"
OUTSIDE = "test:outside_txn"
#: The forbidden cells each plant must fail.
SPLIT_FAILS = (
    "dashboard/snapshot/read_committed",
    "dashboard/snapshot/repeatable_read",
    "dashboard/snapshot/serializable",
    "dashboard/per_statement/repeatable_read",
    "dashboard/per_statement/serializable",
)
OUTSIDE_FAILS = ("dashboard/per_statement/repeatable_read", "dashboard/per_statement/serializable")
SEED = 7


def _split_in_two(
    conn: Conn, user_id: str, coupon_names: Sequence[str], fault: FaultHook | None
) -> None:
    # Each half is the real claim, in its own transaction (the pool is autocommit).
    half = len(coupon_names) // 2
    claim_bundle(conn, user_id, coupon_names[:half], fault)
    claim_bundle(conn, user_id, coupon_names[half:], fault)


def _outside_a_transaction(
    conn: Conn, names: Sequence[str], fault: FaultHook | None = None, level: str = ""
) -> list[tuple[str, int, int, list[str]]]:
    # The pool's connections are autocommit: each statement its own snapshot.
    return statement_by_statement(conn.cursor(), names, fault)


@pytest.fixture(scope="module", autouse=True)
def _planted() -> None:
    if SPLIT not in BUNDLE_CLAIMS:
        register_bundle_claim(SPLIT, _split_in_two)
    if OUTSIDE not in MULTI_READS:
        register_multi_read(OUTSIDE, _outside_a_transaction)


def _run(db_url: str, cells: Sequence[str], **plant: str) -> Result:
    return scenarios.run(
        "isolation", database_url=db_url, seeds=2, seed=SEED, cells=",".join(cells), **plant
    )


def _assert_caught(result: Result, cells: Sequence[str], anomalies: Sequence[str]) -> None:
    assert result.status == "FAIL"
    for name in cells:
        v = result.verdict(name)
        assert v.label == "FAIL", (name, v.label, v.detail)
        assert v.finding is None
        assert any(a in v.detail for a in anomalies), (name, v.detail)
        for anomaly in anomalies:
            assert v.figures["shown"].get(anomaly, 0) >= 1, (name, anomaly, v.figures["shown"])
        w = v.figures["witness"]
        assert w["edges"]
        assert w["cycle"][0] == w["cycle"][-1]


def test_the_real_bundle_claim_and_reads_pass_the_forbidden_dashboard_cells(db_url: str) -> None:
    result = _run(db_url, SPLIT_FAILS)
    assert result.status == "pass", [(v.name, v.detail) for v in result.failed]
    for name in SPLIT_FAILS:
        v = result.verdict(name)
        assert v.passed is True, (name, v.detail)
        assert v.figures["shown"] == {}


def test_a_bundle_split_over_two_transactions_is_caught_as_read_skew_and_g0(db_url: str) -> None:
    result = _run(db_url, SPLIT_FAILS, bundle_claim=SPLIT)
    _assert_caught(result, SPLIT_FAILS, ("G-single", "G0"))
    # The witness of the read between the halves: exactly one anti-dependency (rw).
    for name in SPLIT_FAILS:
        w = result.verdict(name).figures["witness"]
        assert w["anomaly"] == "G-single", (name, w["anomaly"])
        assert [e["kind"] for e in w["edges"]].count("rw") == 1, w["edges"]
        assert "wr" in {e["kind"] for e in w["edges"]}


def test_a_dashboard_reading_outside_a_transaction_fails_the_forbidden_cells(db_url: str) -> None:
    result = _run(db_url, OUTSIDE_FAILS, dashboard_read=OUTSIDE)
    _assert_caught(result, OUTSIDE_FAILS, ("G-single",))
    for name in OUTSIDE_FAILS:
        w = result.verdict(name).figures["witness"]
        assert w["anomaly"] == "G-single", (name, w["anomaly"])
