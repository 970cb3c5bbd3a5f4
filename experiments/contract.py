"""The HTTP contract of DESIGN.md, as a judge: one answer in, its result kind or what broke.

``judge(kind, coupon, status, content_type, body)`` compares one answer with the
contract for its operation: the status must be one the operation can answer with,
a JSON body must say ``application/json``, an error body must be exactly
``{"error": <the contract's message>}``, an empty body must be empty, and a read
must have the coupon's shape (``name`` the one asked for, integer ``amount`` and
``remaining_amount``, ``claimed_by`` a list of strings). An answer that conforms
maps to its result kind; one that differs is a ``contract_violation`` carrying why,
never folded into the nearest allowed outcome.

    op      status  body                                              result kind
    create  201     empty                                             ok
            400     {"error": "invalid request: ..."}                 invalid
            409     {"error": "coupon already exists"}                coupon_exists
    claim   200     empty                                             ok
            400     {"error": "invalid request: ..."}                 invalid
            400     {"error": "coupon out of stock"}                  no_stock
            404     {"error": "coupon not found"}                     not_found
            409     {"error": "coupon already claimed by user"}       already_claimed
    get     200     {"name", "amount", "remaining_amount", "claimed_by"}  ok
            404     {"error": "coupon not found"}                     not_found
    any     503     {"error": <generic text>}                         unavailable
            500     {"error": "internal server error"}                server_error
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from experiments.history import OpKind, ResultKind

__all__ = ["CONTRACT", "Judgement", "judge"]

INVALID_PREFIX = "invalid request: "

#: (op kind, status) -> the error messages allowed and the result kind each maps to.
#: ``None`` as a message: the body must be empty. A message ending in ": " is a prefix.
CONTRACT: dict[tuple[OpKind, int], tuple[tuple[str | None, ResultKind], ...]] = {
    ("create", 201): ((None, "ok"),),
    ("create", 400): ((INVALID_PREFIX, "invalid"),),
    ("create", 409): (("coupon already exists", "coupon_exists"),),
    ("claim", 200): ((None, "ok"),),
    ("claim", 400): (("coupon out of stock", "no_stock"), (INVALID_PREFIX, "invalid")),
    ("claim", 404): (("coupon not found", "not_found"),),
    ("claim", 409): (("coupon already claimed by user", "already_claimed"),),
    ("get", 404): (("coupon not found", "not_found"),),
}
_INTERNAL = "internal server error"


@dataclass(frozen=True)
class Judgement:
    """How one answer ended: its result kind, the error it carried, and what broke, if anything."""

    result: ResultKind
    error: str | None = None
    #: Why the answer is not the contract's (``result`` is then ``contract_violation``).
    violation: str | None = None
    #: A successful read's value: {"amount", "remaining_amount", "claimed_by"}.
    value: dict[str, Any] | None = None


def _violation(why: str) -> Judgement:
    return Judgement("contract_violation", violation=why)


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def _json_body(status: int, content_type: str | None, body: bytes) -> tuple[Any, str | None]:
    """The parsed JSON body, or why the body is not the JSON the contract promises."""
    if not body:
        return None, f"{status} with an empty body, the contract says a JSON body"
    if _media_type(content_type) != "application/json":
        return None, f"{status} with Content-Type {content_type!r}, not application/json"
    try:
        return json.loads(body), None
    except (ValueError, RecursionError):
        return None, f"{status} with a body that is not JSON"


def _error_of(
    status: int, content_type: str | None, body: bytes, *, exact: bool = True
) -> tuple[str | None, str | None]:
    """The ``error`` of an exact ``{"error": "..."}`` body, or why the body is not one.

    ``exact=False`` (a 503, "generic" in the contract) allows fields beside ``error``.
    """
    data, why = _json_body(status, content_type, body)
    if why is not None:
        return None, why
    if not isinstance(data, dict) or not isinstance(data.get("error"), str):
        return None, f'{status} with a body that is not {{"error": "..."}}'
    if exact and set(data) != {"error"}:
        extra = sorted(k for k in data if k != "error")
        return None, f"{status} error body with extra fields {extra}"
    return str(data["error"]), None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _coupon_view(coupon: str, content_type: str | None, body: bytes) -> Judgement:
    data, why = _json_body(200, content_type, body)
    if why is not None:
        return _violation(why)
    if not isinstance(data, dict):
        return _violation("200 read whose body is not a JSON object")
    missing = [k for k in ("name", "amount", "remaining_amount", "claimed_by") if k not in data]
    if missing:
        return _violation(f"200 read without {missing}")
    problems = []
    if data["name"] != coupon:
        problems.append(f"name {data['name']!r} is not the coupon read")
    if not _is_int(data["amount"]) or data["amount"] < 1:
        problems.append(f"amount {data['amount']!r} is not a positive integer")
    if not _is_int(data["remaining_amount"]) or data["remaining_amount"] < 0:
        problems.append(f"remaining_amount {data['remaining_amount']!r} is not an integer >= 0")
    claimed = data["claimed_by"]
    if not isinstance(claimed, list) or not all(isinstance(u, str) for u in claimed):
        problems.append("claimed_by is not a list of user ids")
    if problems:
        return _violation("200 read: " + "; ".join(problems))
    value = {
        "amount": data["amount"],
        "remaining_amount": data["remaining_amount"],
        "claimed_by": list(claimed),
    }
    return Judgement("ok", value=value)


def judge(
    kind: OpKind, coupon: str, status: int, content_type: str | None, body: bytes
) -> Judgement:
    """Judge one HTTP answer to a ``kind`` operation on ``coupon`` (see the module)."""
    if kind == "get" and status == 200:
        return _coupon_view(coupon, content_type, body)
    if status in (500, 503):
        error, why = _error_of(status, content_type, body, exact=status == 500)
        if why is not None:
            return _violation(why)
        if status == 500 and error != _INTERNAL:
            return Judgement(
                "contract_violation", error, f"500 says {error!r}, the contract {_INTERNAL!r}"
            )
        return Judgement("unavailable" if status == 503 else "server_error", error)
    allowed = CONTRACT.get((kind, status))
    if allowed is None:
        return _violation(f"{kind} answered {status}, a status the contract never gives it")
    if allowed[0][0] is None:
        if body:
            shown = body[:80].decode("utf-8", "replace")
            return _violation(f"{status} with a body ({shown!r}), the contract says empty")
        return Judgement(allowed[0][1])
    error, why = _error_of(status, content_type, body)
    if why is not None:
        return _violation(why)
    assert error is not None
    for message, result in allowed:
        assert message is not None
        if error == message or (message.endswith(": ") and error.startswith(message)):
            if message.endswith(": ") and not error[len(message) :].strip():
                break
            return Judgement(result, error)
    expected = " or ".join(repr(m + "..." if m and m.endswith(": ") else m) for m, _ in allowed)
    return Judgement(
        "contract_violation", error, f"{kind} {status} says {error!r}, the contract {expected}"
    )
