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

Every JSON body (any status) is also held to RFC 8259 and DESIGN.md's "Verdicts":
UTF-8 (a ``charset`` other than UTF-8 in the Content-Type is a violation; no charset
means UTF-8), no byte-order mark (UTF-8, UTF-16 or UTF-32), valid UTF-8, no duplicate
key in any object, no ``NaN``/``Infinity``, and no string anywhere in the raw body
(keys and values, at any depth, named fields or not) carrying driver text
(``DRIVER_TEXT``). Two exemptions, both the client's own strings echoed back: a
read's ``name`` when it is the coupon asked for, and its ``claimed_by`` entries (a
fuzzed name or user id may say ``constraint``; an entry nobody claimed is the
linearizability check's to catch); and the contract's own keys (``remaining_amount``
is a column name, and a key of every read by contract).

A read's figures must be possible: ``amount`` in 1..2147483647 (the contract's input
rule), ``remaining_amount`` in 0..``amount``, ``claimed_by`` entries non-blank and
distinct (one claim per user). Whether they are the right figures (the amount the
coupon was created with, the claims acknowledged) is the history checks' question.

Extra fields, decided: an error body is exactly ``{"error": ...}`` (500 and the
4xx; a 503 is "generic" in the contract and may carry more, a retry hint say); a
200 read may carry a field the contract does not name, because the design adds
fields additively (a coupon's ``campaign``) and a client that ignores unknown fields
keeps working. Two limits: a successful read never carries an ``error`` field (an
answer that is both is no answer the contract gives), and driver text in an extra
field is a violation like anywhere else.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from experiments.history import OpKind, ResultKind

__all__ = [
    "AMOUNT_MAX",
    "CONTRACT",
    "CONTRACT_KEYS",
    "DRIVER_TEXT",
    "Judgement",
    "driver_text",
    "judge",
]

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
#: The contract's input rule for ``amount`` (a PostgreSQL INTEGER), and so a read's bound.
AMOUNT_MAX = 2147483647
#: The keys the contract names: a key of a public answer, never driver text as a key.
CONTRACT_KEYS = frozenset({"name", "amount", "remaining_amount", "claimed_by", "error", "status"})
_READ_KEYS = ("name", "amount", "remaining_amount", "claimed_by")

#: Text that belongs to the driver or the database, never to a public answer: the one
#: definition (``experiments.checks.no_driver_text`` reads it from here).
DRIVER_TEXT = re.compile(
    r"psycopg|sqlstate|duplicate key|violates|ERROR:|DETAIL:|HINT:|CONTEXT:|LINE \d|"
    r"constraint|relation \"|syntax error|traceback|postgres|deadlock|"
    r"could not serialize|unique.?violation|foreignkey|checkviolation|"
    r"remaining_amount|coupons_pkey|claims_",
    re.IGNORECASE,
)
# A contract key as it appears in raw JSON text (a cut body that no longer parses).
_KEY_TEXT = re.compile(
    r'"(?:' + "|".join(sorted(CONTRACT_KEYS)) + r')"\s*:',
)
# Longest first: a UTF-32 LE mark begins with the UTF-16 LE one.
_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xef\xbb\xbf", "UTF-8"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
_UTF8 = frozenset({"utf-8", "utf8"})


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


def _charset(content_type: str | None) -> str | None:
    """The ``charset`` parameter of a Content-Type, lower-cased and unquoted (None: none)."""
    for param in (content_type or "").split(";")[1:]:
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return None


class _Duplicate(ValueError):
    pass


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON (RFC 8259)")


def _parse(body: bytes) -> tuple[Any, str | None]:
    """``body`` as RFC 8259 JSON (UTF-8, no BOM, no duplicate key), or why it is not."""
    for bom, name in _BOMS:
        if body.startswith(bom):
            return None, f"a body opening with a {name} byte-order mark (RFC 8259 forbids one)"
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return None, "a body that is not UTF-8"
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant), None
    except _Duplicate as dup:
        return None, f"a body with the key {str(dup)!r} twice"
    except (ValueError, RecursionError):
        return None, "a body that is not JSON"


def _strings(data: Any, *, echoed: bool = False) -> Iterator[str]:
    """Every string of a parsed JSON value, keys and values at any depth, but the echoes.

    ``echoed``: ``data`` is a read of the coupon asked for, whose ``name`` and
    ``claimed_by`` entries are the client's own strings (see the module). The
    contract's own keys are no driver text as keys.
    """
    stack: list[Any] = [data]
    if echoed and isinstance(data, dict):
        stack = [{k: v for k, v in data.items() if k not in ("name", "claimed_by")}]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            yield item
        elif isinstance(item, dict):
            yield from (k for k in item if k not in CONTRACT_KEYS)
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def _leak(data: Any, *, echoed: bool = False) -> str | None:
    return next((t for t in _strings(data, echoed=echoed) if DRIVER_TEXT.search(t)), None)


def driver_text(body: str | bytes | None) -> str | None:
    """The first string of a raw body (or message) that carries driver text; None: none.

    Reads every string in the body, named by the contract or not; the contract's own
    keys aside. A body that does not parse (cut short, not JSON) is searched as text.
    """
    if not body:
        return None
    raw = body.encode("utf-8", "replace") if isinstance(body, str) else body
    text = raw.decode("utf-8", "replace").lstrip("\ufeff")
    try:
        data = json.loads(text)
    except (ValueError, RecursionError):
        stripped = _KEY_TEXT.sub("", text)
        return text if DRIVER_TEXT.search(stripped) else None
    return _leak(data)


def _json_body(status: int, content_type: str | None, body: bytes) -> tuple[Any, str | None]:
    """The parsed JSON body, or why the body is not the JSON the contract promises."""
    if not body:
        return None, f"{status} with an empty body, the contract says a JSON body"
    if _media_type(content_type) != "application/json":
        return None, f"{status} with Content-Type {content_type!r}, not application/json"
    charset = _charset(content_type)
    if charset is not None and charset not in _UTF8:
        return None, f"{status} with Content-Type {content_type!r}: JSON is UTF-8 (RFC 8259)"
    data, why = _parse(body)
    if why is not None:
        return None, f"{status} with {why}"
    return data, None


def _error_of(
    status: int, content_type: str | None, body: bytes, *, exact: bool = True
) -> tuple[str | None, str | None]:
    """The ``error`` of an exact ``{"error": "..."}`` body, or why the body is not one.

    ``exact=False`` (a 503, "generic" in the contract) allows fields beside ``error``.
    """
    data, why = _json_body(status, content_type, body)
    if why is not None:
        return None, why
    leak = _leak(data)
    if leak is not None:
        return None, f"{status} with driver text in its body: {leak[:120]!r}"
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
    leak = _leak(data, echoed=data.get("name") == coupon)
    if leak is not None:
        return _violation(f"200 read with driver text in its body: {leak[:120]!r}")
    missing = [k for k in _READ_KEYS if k not in data]
    if missing:
        return _violation(f"200 read without {missing}")
    problems = []
    if "error" in data:
        problems.append("a successful read with an 'error' field")
    if data["name"] != coupon:
        problems.append(f"name {data['name']!r} is not the coupon read")
    amount, remaining = data["amount"], data["remaining_amount"]
    if not _is_int(amount) or not 1 <= amount <= AMOUNT_MAX:
        problems.append(f"amount {amount!r} is not an integer in 1..{AMOUNT_MAX}")
    if not _is_int(remaining) or remaining < 0:
        problems.append(f"remaining_amount {remaining!r} is not an integer >= 0")
    elif _is_int(amount) and remaining > amount:
        problems.append(f"remaining_amount {remaining} is above amount {amount}")
    claimed = data["claimed_by"]
    if not isinstance(claimed, list) or not all(isinstance(u, str) for u in claimed):
        problems.append("claimed_by is not a list of user ids")
    else:
        if any(not u.strip() for u in claimed):
            problems.append("claimed_by holds a blank user id")
        repeated = sorted(u for u, n in Counter(claimed).items() if n > 1)
        if repeated:
            problems.append(f"claimed_by repeats {repeated[:5]}")
    if problems:
        return _violation("200 read: " + "; ".join(problems))
    value = {"amount": amount, "remaining_amount": remaining, "claimed_by": list(claimed)}
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
