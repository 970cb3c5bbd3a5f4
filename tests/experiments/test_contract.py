"""Contract judging: each answer against DESIGN.md's contract; planted server bugs are caught."""

from __future__ import annotations

from typing import Any

import pytest

from experiments import scenarios
from experiments.checks import contract_kept
from experiments.contract import judge
from experiments.history import History, Op
from experiments.lab import http_target
from tests.wrong_server import VARIANTS, serve_wrong

J = "application/json"


@pytest.mark.parametrize(
    ("kind", "status", "ctype", "body", "want"),
    [
        ("create", 201, None, b"", "ok"),
        ("create", 409, J, b'{"error": "coupon already exists"}', "coupon_exists"),
        ("create", 400, J, b'{"error": "invalid request: amount is required"}', "invalid"),
        ("claim", 200, None, b"", "ok"),
        ("claim", 400, J, b'{"error": "coupon out of stock"}', "no_stock"),
        ("claim", 404, J, b'{"error": "coupon not found"}', "not_found"),
        ("claim", 409, J, b'{"error": "coupon already claimed by user"}', "already_claimed"),
        (
            "get",
            404,
            "application/json; charset=utf-8",
            b'{"error": "coupon not found"}',
            "not_found",
        ),
        ("get", 503, J, b'{"error": "service unavailable"}', "unavailable"),
        ("claim", 503, J, b'{"error": "service unavailable", "retry_after_s": 1}', "unavailable"),
        ("claim", 500, J, b'{"error": "internal server error"}', "server_error"),
    ],
)
def test_contract_answers_map_to_their_result(
    kind: Any, status: int, ctype: str | None, body: bytes, want: str
) -> None:
    got = judge(kind, "c", status, ctype, body)
    assert (got.result, got.violation) == (want, None)


@pytest.mark.parametrize(
    ("kind", "status", "ctype", "body", "why"),
    [
        (
            "claim",
            409,
            J,
            b'{"error": "coupon already exists"}',
            "contract 'coupon already claimed",
        ),
        ("claim", 409, J, b'{"error": "coupon out of stock"}', "says 'coupon out of stock'"),
        ("claim", 400, J, b'{"error": "oops"}', "says 'oops'"),
        ("claim", 400, J, b'{"error": "invalid request: "}', "says 'invalid request: '"),
        ("claim", 200, J, b'{"status": "claimed"}', "the contract says empty"),
        ("create", 201, J, b"{}", "the contract says empty"),
        ("create", 200, None, b"", "a status the contract never gives it"),
        ("claim", 404, "text/plain", b'{"error": "coupon not found"}', "not application/json"),
        ("claim", 404, J, b'{"error": "coupon not found", "code": 7}', "extra fields"),
        ("claim", 404, J, b"", "empty body"),
        ("claim", 503, J, b"busy", "not JSON"),
        ("claim", 500, J, b'{"error": "KeyError: x"}', "500 says"),
        (
            "get",
            200,
            J,
            b'{"name": "c", "amount": 1, "remaining_amount": 1}',
            "without ['claimed_by']",
        ),
        (
            "get",
            200,
            J,
            b'{"name": "d", "amount": 1, "remaining_amount": 0, "claimed_by": ["u"]}',
            "is not the coupon read",
        ),
        (
            "get",
            200,
            J,
            b'{"name": "c", "amount": true, "remaining_amount": -1, "claimed_by": [1]}',
            "claimed_by is not a list",
        ),
    ],
)
def test_answers_outside_the_contract_are_violations(
    kind: Any, status: int, ctype: str | None, body: bytes, why: str
) -> None:
    got = judge(kind, "c", status, ctype, body)
    assert got.result == "contract_violation"
    assert why in (got.violation or "")


def test_contract_kept_fails_on_a_violation_and_passes_without_http() -> None:
    history = History()
    history.append(Op(1, 0, "claim", "c", user="u", result="no_stock", invoke_ns=1, complete_ns=2))
    verdict = contract_kept(history)
    assert verdict.passed is True
    assert verdict.figures["judged"] == 0
    history.append(
        Op(
            2,
            0,
            "claim",
            "c",
            user="v",
            result="contract_violation",
            http_status=409,
            body='{"error":"oops"}',
            message="contract: claim 409 says 'oops'",
            invoke_ns=1,
            complete_ns=2,
        )
    )
    verdict = contract_kept(history)
    assert verdict.passed is False
    assert verdict.figures["violations_by_status"] == {"409": 1}
    assert verdict.figures["first_body"] == '{"error":"oops"}'


#: Which catalog scenario (with small figures) exercises the rule each variant breaks.
CATCHES: dict[str, tuple[str, dict[str, Any]]] = {
    "claimed_message_on_409": ("constraint_storm", {"requests": 10}),
    "out_of_stock_409": ("zero_stock_stampede", {"users": 20}),
    "out_of_stock_message": ("flash_sale", {"users": 20}),
    "body_on_claim_200": ("flash_sale", {"users": 20}),
    "body_on_create_201": ("flash_sale", {"users": 20}),  # its setup create: the run goes on
    "missing_claimed_by": ("mixed_load", {}),
    "text_plain_errors": ("double_dip", {}),
}


def test_every_variant_has_a_scenario_that_should_catch_it() -> None:
    assert set(CATCHES) == set(VARIANTS)
    assert {name for name, _ in CATCHES.values()} <= set(scenarios.CATALOG)


@pytest.mark.chaos
@pytest.mark.parametrize("variant", sorted(CATCHES))
def test_each_planted_bug_is_caught_on_the_http_layer(db_url: str, variant: str) -> None:
    scenario, figures = CATCHES[variant]
    with serve_wrong(db_url, variant) as url, http_target(url):
        result = scenarios.run(scenario, layer="http", seed=11, database_url=db_url, **figures)
    verdict = result.verdict("contract_kept")
    assert verdict.passed is False, verdict.detail
    assert not result.passed
    broken = [o for o in result.history.ops if o.result == "contract_violation"]
    assert broken
    # The answer is kept on the op: status and body, and why it broke the contract.
    assert all(o.http_status is not None and o.message for o in broken)
    assert all(o.body is not None for o in broken)
    assert verdict.figures["violations"] == len(broken)


@pytest.mark.chaos
def test_the_double_without_a_variant_keeps_the_contract(db_url: str) -> None:
    """The control: the same seam and child process, no planted bug: every check passes."""
    with serve_wrong(db_url, None) as url, http_target(url):
        results = [
            scenarios.run(name, layer="http", seed=11, database_url=db_url, **figures)
            for name, figures in (("flash_sale", {"users": 20}), ("mixed_load", {}))
        ]
    for result in results:
        assert result.verdict("contract_kept").passed is True
        assert result.verdict("contract_kept").figures["judged"] > 0
        # The double's own threads live in another process: nothing here is a leak.
        assert result.passed, [(v.name, v.detail) for v in result.failed]
