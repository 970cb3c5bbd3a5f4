"""Contract judging: each answer against DESIGN.md's contract; planted server bugs are caught."""

from __future__ import annotations

import json
from typing import Any

import pytest

from experiments import scenarios
from experiments.checks import contract_kept, no_driver_text
from experiments.contract import driver_text, judge
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
        ("claim", 500, J, b'{"error": "oops"}', "500 says"),
        ("claim", 500, J, b'{"error": "KeyError: x"}', "driver text in its body"),
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


def _read(**fields: object) -> bytes:
    body: dict[str, object] = {"name": "c", "amount": 5, "remaining_amount": 4, "claimed_by": ["a"]}
    body.update(fields)
    return json.dumps(body).encode()


LEAK = "psycopg.errors.UniqueViolation: duplicate key value violates unique constraint"


# Each rule with the issue's own input (issue 25, point 3); each was accepted before.
@pytest.mark.parametrize(
    ("kind", "status", "ctype", "body", "why"),
    [
        # Driver text in a field the contract does not name, at any depth, or as a key.
        ("get", 200, J, _read(error=f"{LEAK}: ..."), "driver text in its body"),
        ("get", 200, J, _read(meta={"trace": ["ERROR: x"]}), "driver text in its body"),
        ("get", 200, J, _read(**{"psycopg.errors.UniqueViolation": 1}), "driver text"),
        ("claim", 503, J, b'{"error": "service unavailable", "detail": "psycopg"}', "driver"),
        # Duplicate keys (json.loads keeps the last, which hid the first).
        (
            "claim",
            404,
            J,
            b'{"error": "ERROR: relation \\"coupons\\" does not exist", '
            b'"error": "coupon not found"}',
            "the key 'error' twice",
        ),
        (
            "get",
            200,
            J,
            b'{"name": "c", "name": "c", "amount": 1, "remaining_amount": 1, "claimed_by": []}',
            "the key 'name' twice",
        ),
        # Any charset but UTF-8.
        (
            "claim",
            404,
            "application/json; charset=latin-1",
            b'{"error": "coupon not found"}',
            "JSON is UTF-8",
        ),
        (
            "claim",
            404,
            "application/json; charset=utf-16",
            b'{"error": "coupon not found"}',
            "JSON is UTF-8",
        ),
        # A byte-order mark (RFC 8259 forbids one), UTF-8 or UTF-16.
        ("claim", 404, J, b'\xef\xbb\xbf{"error": "coupon not found"}', "UTF-8 byte-order mark"),
        ("claim", 404, J, '{"error": "coupon not found"}'.encode("utf-16"), "UTF-16 byte-order"),
        ("claim", 404, J, b'{"error": "coupon \xff found"}', "not UTF-8"),
        ("get", 200, J, _read().replace(b"4", b"NaN"), "not JSON"),
        # A read's figures outside what the contract allows.
        ("get", 200, J, _read(amount=0, remaining_amount=0, claimed_by=[]), "amount 0 is not"),
        ("get", 200, J, _read(amount=2147483648), "amount 2147483648 is not an integer in"),
        ("get", 200, J, _read(remaining_amount=6), "remaining_amount 6 is above amount 5"),
        ("get", 200, J, _read(claimed_by=["a", ""]), "claimed_by holds a blank user id"),
        ("get", 200, J, _read(claimed_by=["a", "  "]), "claimed_by holds a blank user id"),
        ("get", 200, J, _read(remaining_amount=3, claimed_by=["a", "a"]), "repeats ['a']"),
        # A success is never an error too.
        ("get", 200, J, _read(error="coupon not found"), "with an 'error' field"),
    ],
)
def test_the_strict_rules_of_a_body(
    kind: Any, status: int, ctype: str, body: bytes, why: str
) -> None:
    got = judge(kind, "c", status, ctype, body)
    assert got.result == "contract_violation", got
    assert why in (got.violation or ""), got.violation


@pytest.mark.parametrize(
    ("coupon", "ctype", "body"),
    [
        # An additive field (the design adds fields so) is allowed in a read.
        ("c", J, _read(campaign="spring")),
        # The client's own strings echoed back are no driver text: a fuzzed name, a user id.
        ("constraint", J, _read(name="constraint")),
        ("c", J, _read(claimed_by=["ERROR: user"], remaining_amount=4)),
        # UTF-8 said, in any spelling; the figures at their bounds.
        ("c", "application/json; charset=UTF-8", _read()),
        ("c", 'application/json; charset="utf-8"', _read()),
        ("c", J, _read(amount=2147483647, remaining_amount=2147483646)),
        ("c", J, _read(amount=1, remaining_amount=1, claimed_by=[])),
        ("c", J, '{"name": "c", "amount": 5, "remaining_amount": 4, "claimed_by": ["é"]}'.encode()),
    ],
)
def test_reads_the_strict_rules_allow(coupon: str, ctype: str, body: bytes) -> None:
    got = judge("get", coupon, 200, ctype, body)
    assert (got.result, got.violation) == ("ok", None)


def test_driver_text_reads_every_string_of_a_raw_body() -> None:
    assert driver_text(_read(extra={"deep": [f"{LEAK}"]})) == LEAK
    assert driver_text(_read()) is None  # the contract's keys (remaining_amount) are no leak
    assert driver_text(_read()[:30]) is None  # cut short: searched as text, keys aside
    assert driver_text(b'{"error": "coupon not found"} ERROR:  x') is not None
    assert driver_text(None) is None


def test_no_driver_text_reads_the_kept_body_of_a_violation() -> None:
    """A read outside the contract names remaining_amount as a key: no leak; its extra
    field's driver text is one (the issue's input)."""

    def violated(body: bytes) -> History:
        got = judge("get", "c", 200, J, body)
        history = History()
        history.append(
            Op(
                1,
                0,
                "get",
                "c",
                result=got.result,
                http_status=200,
                message=f"contract: {got.violation}",
                body=body.decode(),
                invoke_ns=1,
                complete_ns=2,
            )
        )
        return history

    assert no_driver_text(violated(_read(remaining_amount=6))).passed is True
    assert no_driver_text(violated(_read(error=f"{LEAK}: ..."))).passed is False


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
    "driver_text_extra_field": ("mixed_load", {}),
    "duplicate_error_key": ("double_dip", {}),
    "latin1_charset": ("zero_stock_stampede", {"users": 20}),
    "utf8_bom": ("constraint_storm", {"requests": 10}),
    "utf16_bom": ("flash_sale", {"users": 20}),
    "amount_out_of_range": ("mixed_load", {}),
    "remaining_above_amount": ("mixed_load", {}),
    "blank_claimed_by": ("mixed_load", {}),
    "repeated_claimed_by": ("mixed_load", {}),
}


#: What the judge says of each variant's answers: caught for the rule it breaks.
WHY: dict[str, str] = {
    "claimed_message_on_409": "says 'coupon already exists'",
    "out_of_stock_409": "claim 409 says 'coupon out of stock'",
    "out_of_stock_message": "says 'oops'",
    "body_on_claim_200": "the contract says empty",
    "body_on_create_201": "the contract says empty",
    "missing_claimed_by": "without ['claimed_by']",
    "text_plain_errors": "not application/json",
    "driver_text_extra_field": "200 read with driver text in its body",
    "duplicate_error_key": "with a body with the key 'error' twice",
    "latin1_charset": "charset=latin-1': JSON is UTF-8",
    "utf8_bom": "UTF-8 byte-order mark",
    "utf16_bom": "UTF-16 byte-order mark",
    "amount_out_of_range": "amount 2147483648 is not an integer in 1..2147483647",
    "remaining_above_amount": "is above amount",
    "blank_claimed_by": "claimed_by holds a blank user id",
    "repeated_claimed_by": "claimed_by repeats",
}


def caught_for_its_rule(variant: str, ops: list[Op]) -> bool:
    """Some answer of the run broke the contract for the rule ``variant`` plants."""
    return any(o.result == "contract_violation" and WHY[variant] in (o.message or "") for o in ops)


def test_every_variant_has_a_scenario_that_should_catch_it() -> None:
    assert set(CATCHES) == set(VARIANTS) == set(WHY)
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
    assert caught_for_its_rule(variant, broken), [o.message for o in broken[:3]]


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
