"""Checks: each one passes on a good history or state and fails on a bad one."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from experiments import checks
from experiments.checks import FinalState, read_state
from experiments.history import History, Op
from experiments.result import Verdict
from tests import histories
from tests.histories import history

P = "run1"


def op(
    op_id: int,
    kind: str,
    result: str,
    *,
    coupon: str = f"{P}-a",
    user: str | None = "u1",
    t: tuple[int, int] = (0, 1),
    **fields: Any,
) -> Op:
    return histories.op(op_id, kind, *t, result, user, coupon=coupon, worker=0, unit=1, **fields)


def state(coupons: dict[str, tuple[int, int]], claims: list[tuple[int, str, str]]) -> FinalState:
    return FinalState(prefix=P, coupons=coupons, claims=claims)


GOOD = state({f"{P}-a": (2, 1)}, [(1, "u1", f"{P}-a")])


def test_conservation() -> None:
    assert checks.conservation(GOOD).passed is True
    bad = state({f"{P}-a": (2, 0)}, [(1, "u1", f"{P}-a")])
    v = checks.conservation(bad)
    assert v.passed is False
    assert "amount 2" in v.detail


def test_one_claim_per_user() -> None:
    assert checks.one_claim_per_user(GOOD).passed is True
    bad = state({f"{P}-a": (2, 0)}, [(1, "u1", f"{P}-a"), (2, "u1", f"{P}-a")])
    assert checks.one_claim_per_user(bad).passed is False


def test_no_orphan_claims() -> None:
    assert checks.no_orphan_claims(GOOD).passed is True
    bad = state({f"{P}-a": (2, 1)}, [(1, "u1", f"{P}-a"), (2, "u2", f"{P}-gone")])
    assert checks.no_orphan_claims(bad).passed is False


def test_no_negative_stock() -> None:
    assert checks.no_negative_stock(GOOD).passed is True
    assert checks.no_negative_stock(state({f"{P}-a": (2, -1)}, [])).passed is False
    assert checks.no_negative_stock(state({f"{P}-a": (2, 3)}, [])).passed is False


def test_claims_match_history_exact_without_indeterminate_ops() -> None:
    h = history(op(1, "claim", "ok"), op(2, "claim", "no_stock", user="u2"))
    assert checks.claims_match_history(h, GOOD).passed is True
    # One ok claim, no row: an acknowledged claim was lost.
    lost = checks.claims_match_history(h, state({f"{P}-a": (2, 2)}, []))
    assert lost.passed is False
    # A row nobody was told about, with no indeterminate op to explain it.
    extra = state({f"{P}-a": (3, 1)}, [(1, "u1", f"{P}-a"), (2, "u2", f"{P}-a")])
    assert checks.claims_match_history(h, extra).passed is False


def test_claims_match_history_with_indeterminate_ops() -> None:
    h = history(op(1, "claim", "ok"), op(2, "claim", "unknown", user="u2"))
    one_row = checks.claims_match_history(h, GOOD)
    assert one_row.passed is True
    two = state({f"{P}-a": (3, 1)}, [(1, "u1", f"{P}-a"), (2, "u2", f"{P}-a")])
    assert checks.claims_match_history(h, two).passed is True
    three = state(
        {f"{P}-a": (3, 0)},
        [(1, "u1", f"{P}-a"), (2, "u2", f"{P}-a"), (3, "u3", f"{P}-a")],
    )
    assert checks.claims_match_history(h, three).passed is False


def test_a_phantom_row_is_not_hidden_in_the_slack_of_an_unknown_claim() -> None:
    # r25's case: a lost claim made unknown (a finding's re-check) beside a row of a
    # user no claim names: 0 ok + 1 unknown >= 1 row passed on counts alone.
    h = history(op(1, "claim", "unknown"))
    phantom = state({f"{P}-a": (2, 1)}, [(1, "u9", f"{P}-a")])
    v = checks.claims_match_history(h, phantom)
    assert v.passed is False
    assert "u9 on" in v.detail
    assert v.figures["phantom_rows"] == 1
    # The row the unknown claim may have made is explained.
    own = state({f"{P}-a": (2, 1)}, [(1, "u1", f"{P}-a")])
    assert checks.claims_match_history(h, own).passed is True


def test_statuses_allowed() -> None:
    good = history(
        op(1, "create", "ok", status=201),
        op(2, "claim", "no_stock", status=400),
        op(3, "get", "not_found", status=404),
        op(4, "claim", "ok"),
    )
    assert checks.statuses_allowed(good).passed is True
    assert checks.statuses_allowed(history(op(1, "get", "already_claimed"))).passed is False
    assert checks.statuses_allowed(history(op(1, "create", "ok", status=200))).passed is False
    assert checks.statuses_allowed(history(op(1, "claim", "invalid", status=422))).passed is False


def test_no_server_errors() -> None:
    assert checks.no_server_errors(history(op(1, "claim", "ok", status=200))).passed is True
    assert (
        checks.no_server_errors(history(op(1, "claim", "server_error", status=500))).passed is False
    )
    assert checks.no_server_errors(history(op(1, "claim", "server_error"))).passed is False
    busy = history(op(1, "claim", "unavailable", status=503))
    assert checks.no_server_errors(busy).passed is False
    assert checks.no_server_errors(busy, allow_unavailable=True).passed is True


@pytest.mark.parametrize(
    "message",
    [
        'duplicate key value violates unique constraint "claims_user_id_coupon_name_key"',
        "psycopg.errors.UniqueViolation: ...",
        "ERROR:  new row for relation",
        'insert or update on table "claims" violates foreign key constraint',
    ],
)
def test_no_driver_text_fails_on_driver_text(message: str) -> None:
    h = history(op(1, "claim", "already_claimed", status=409, message=message))
    assert checks.no_driver_text(h).passed is False


def test_no_driver_text_passes_on_the_contract_messages() -> None:
    messages = [
        "coupon already exists",
        "coupon not found",
        "coupon already claimed by user",
        "coupon out of stock",
        "invalid request: amount must be between 1 and 2147483647",
        "invalid request: name is required",
        "service unavailable",
    ]
    h = history(*(op(i, "claim", "invalid", message=m) for i, m in enumerate(messages)))
    assert checks.no_driver_text(h).passed is True


def test_no_timeouts() -> None:
    assert checks.no_timeouts(history(op(1, "claim", "ok"))).passed is True
    assert (
        checks.no_timeouts(history(op(1, "claim", "unknown", message="ReadTimeout"))).passed
        is False
    )


def test_expected_counts_exact() -> None:
    h = history(op(1, "claim", "ok"), *(op(i, "claim", "no_stock") for i in range(2, 5)))
    assert checks.expected_counts(h, "claim", {"ok": 1, "no_stock": 3}).passed is True
    assert checks.expected_counts(h, "claim", {"ok": 1, "no_stock": 2}).passed is False
    extra = history(op(1, "claim", "ok"), op(2, "claim", "no_stock"), op(3, "claim", "invalid"))
    assert checks.expected_counts(extra, "claim", {"ok": 1, "no_stock": 1}).passed is False
    # Filtering by coupon: another coupon's ops do not count.
    other = history(op(1, "claim", "ok"), op(2, "claim", "ok", coupon=f"{P}-b"))
    assert checks.expected_counts(other, "claim", {"ok": 1}, coupons=[f"{P}-a"]).passed is True


def test_conservation_takes_the_amount_from_the_acknowledged_create() -> None:
    """Issue 25, point 4: created with 5, the row says 50, remaining 49, one claim.

    The table agrees with itself (50 = 49 + 1), and conservation on the table alone
    passed; the history says 5 was created, and 5 != 49 + 1.
    """
    created = op(0, "create", "ok", user=None, amount=5)
    rewritten = state({f"{P}-a": (50, 49)}, [(1, "u1", f"{P}-a")])
    h = history(created, op(1, "claim", "ok"))
    assert checks.conservation(rewritten).passed is True  # the table alone: bent
    v = checks.conservation(rewritten, h)
    assert v.passed is False
    assert "amount 50 in the table, created with 5" in v.detail
    assert "created with 5 != remaining 49 + claims 1" in v.detail
    assert v.figures["amounts_from"] == "history"
    assert (
        next(x for x in checks.always_on(h, rewritten) if x.name == "conservation").passed is False
    )
    honest = state({f"{P}-a": (5, 4)}, [(1, "u1", f"{P}-a")])
    assert checks.conservation(honest, h).passed is True


def test_conservation_names_rows_and_creates_the_history_does_not_explain() -> None:
    h = history(op(0, "create", "ok", user=None, amount=5, coupon=f"{P}-b"))
    # A row no create made, and an acknowledged create with no row.
    v = checks.conservation(state({f"{P}-a": (2, 2)}, []), h)
    assert v.passed is False
    assert "no create in the history made" in v.detail
    assert f"{P}-b: created (acknowledged) but no row" in v.detail
    # A create whose answer was lost may have made the coupon, with its amount.
    maybe = history(op(0, "create", "unknown", user=None, amount=2))
    assert checks.conservation(state({f"{P}-a": (2, 2)}, []), maybe).passed is True
    assert checks.conservation(state({f"{P}-a": (3, 3)}, []), maybe).passed is False
    refused = history(op(0, "create", "coupon_exists", user=None, amount=2))
    assert checks.conservation(state({f"{P}-a": (2, 2)}, []), refused).passed is False


def test_created_amounts() -> None:
    h = history(
        op(0, "create", "ok", user=None, amount=5),
        op(1, "create", "coupon_exists", user=None, amount=7),
        op(2, "create", "unknown", user=None, amount=9, coupon=f"{P}-b"),
        op(3, "create", "ok", user=None, amount=1, coupon="other-c"),
    )
    assert checks.created_amounts(h, P) == {f"{P}-a": {5}, f"{P}-b": {9}}


def test_state_equals_is_the_one_state_figure_check() -> None:
    v = checks.state_equals("final_stock", GOOD, f"{P}-a", 0, FinalState.remaining, "remaining")
    assert (v.name, v.passed, v.figures) == ("final_stock", False, {"remaining": 1, "expected": 0})
    assert checks.remaining_equals(GOOD, f"{P}-a", 1).name == "final_stock"
    assert checks.rows_equal(GOOD, f"{P}-a", 1).figures == {"rows": 1, "expected": 1}
    assert checks.rows_equal(GOOD, f"{P}-a", 1).name == "claim_rows"
    unread = FinalState(prefix=P, unavailable="no database")
    assert checks.rows_equal(unread, f"{P}-a", 1).skipped


def test_remaining_and_rows() -> None:
    assert checks.remaining_equals(GOOD, f"{P}-a", 1).passed is True
    assert checks.remaining_equals(GOOD, f"{P}-a", 0).passed is False
    assert checks.remaining_equals(GOOD, f"{P}-missing", 0).passed is False
    assert checks.rows_equal(GOOD, f"{P}-a", 1).passed is True
    assert checks.rows_equal(GOOD, f"{P}-a", 2).passed is False


def test_results_within_and_at_least() -> None:
    h = history(op(1, "claim", "ok"), op(2, "claim", "not_found"))
    assert checks.results_within(h, "claim", ("ok", "not_found")).passed is True
    assert checks.results_within(h, "claim", ("ok",)).passed is False
    assert checks.at_least(h, "claim", "not_found", 1, name="nf").passed is True
    assert checks.at_least(h, "claim", "not_found", 2, name="nf").passed is False


def test_gets_consistent() -> None:
    good = {"amount": 3, "remaining_amount": 1, "claimed_by": ["a", "b"]}
    assert checks.gets_consistent(history(op(1, "get", "ok", value=good))).passed is True
    torn = {"amount": 3, "remaining_amount": 2, "claimed_by": ["a", "b"]}
    assert checks.gets_consistent(history(op(1, "get", "ok", value=torn))).passed is False
    assert checks.gets_consistent(history(op(1, "get", "ok", value=None))).passed is False


# Creates and claims of one name: create 10 wins over [100, 200] ns.
def _interleaved(*extra: Op) -> History:
    return history(
        op(10, "create", "ok", user=None, t=(100, 200)),
        op(11, "create", "coupon_exists", user=None, t=(110, 250)),
        *extra,
    )


def test_no_success_before_create() -> None:
    good = _interleaved(op(1, "claim", "ok", t=(50, 210)), op(2, "claim", "ok", t=(150, 190)))
    assert checks.no_success_before_create(good, f"{P}-a").passed is True
    bad = _interleaved(op(1, "claim", "ok", t=(10, 90)))
    assert checks.no_success_before_create(bad, f"{P}-a").passed is False
    no_winner = history(op(1, "claim", "ok", t=(10, 90)))
    assert checks.no_success_before_create(no_winner, f"{P}-a").passed is False


def test_no_not_found_after_create() -> None:
    good = _interleaved(
        op(1, "claim", "not_found", t=(150, 260)), op(2, "get", "not_found", t=(5, 9))
    )
    assert checks.no_not_found_after_create(good, f"{P}-a").passed is True
    bad = _interleaved(op(1, "claim", "not_found", t=(201, 260)))
    assert checks.no_not_found_after_create(bad, f"{P}-a").passed is False


def test_two_winning_creates_fail_the_order_checks_with_that_reason() -> None:
    """A history the contract cannot produce is a failure, not a crash into unknown."""
    h = history(op(1, "create", "ok", t=(1, 2)), op(2, "create", "ok", t=(3, 4)))
    for check in (checks.no_success_before_create, checks.no_not_found_after_create):
        v = check(h, f"{P}-a")
        assert v.passed is False, v.detail
        assert "impossible history: 2 creates" in v.detail


def test_a_crashing_check_is_unknown_never_a_pass() -> None:
    @checks.check("explodes")
    def explodes() -> Verdict:
        raise RuntimeError("boom")

    v = explodes()
    assert v.passed is None
    assert v.name == "explodes"
    assert "boom" in v.detail
    # A malformed value in the state makes a real check crash: unknown, not pass.
    broken = FinalState(prefix=P, coupons={f"{P}-a": (2, None)}, claims=[])  # type: ignore[dict-item]
    assert checks.conservation(broken).passed is None


def test_always_on_passes_and_fails() -> None:
    h = history(op(0, "create", "ok", user=None, amount=2), op(1, "claim", "ok", status=200))
    assert all(v.passed is True for v in checks.always_on(h, GOOD))
    names = [v.name for v in checks.always_on(h, GOOD)]
    assert "conservation" in names
    assert "no_timeouts" in names
    bad = checks.always_on(history(op(1, "claim", "unknown")), GOOD)
    assert any(v.passed is False for v in bad)


@pytest.fixture
def conn(db_url: str) -> Iterator[psycopg.Connection[tuple[object, ...]]]:
    from coupon_core import apply_schema

    apply_schema(db_url)
    with psycopg.connect(db_url, autocommit=True) as c:
        yield c


def test_read_state_reads_only_the_prefix(
    conn: psycopg.Connection[tuple[object, ...]], unique: str
) -> None:
    # "_" is a LIKE wildcard: a neighbour whose name differs there must not match.
    prefix = f"{unique}_x"
    neighbour = f"{unique}Yx-a"
    conn.execute(
        "INSERT INTO coupons (name, amount, remaining_amount) VALUES (%s, 3, 2), (%s, 5, 5), (%s, 1, 1)",
        (f"{prefix}-a", f"{prefix}-b", neighbour),
    )
    conn.execute(
        "INSERT INTO claims (user_id, coupon_name) VALUES ('u1', %s), ('u9', %s)",
        (f"{prefix}-a", neighbour),
    )
    s = read_state(conn, prefix)
    assert s.coupons == {f"{prefix}-a": (3, 2), f"{prefix}-b": (5, 5)}
    assert [(u, c) for _, u, c in s.claims] == [("u1", f"{prefix}-a")]
    assert checks.conservation(s).passed is True
    # Break conservation with plain SQL, as a buggy service would: the check sees it.
    conn.execute("UPDATE coupons SET remaining_amount = 3 WHERE name = %s", (f"{prefix}-a",))
    assert checks.conservation(read_state(conn, prefix)).passed is False
    with pytest.raises(ValueError, match="prefix"):
        read_state(conn, "")
