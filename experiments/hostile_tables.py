"""The hostile catalog as data: name lists and one table of requests per group.

Read by ``experiments.hostile.catalog``, which resolves each row's markers for a run.
A row is one request with markers where the run's own names go: ``Fresh(tail)`` a new
accepted name ``<prefix>-<n>-<tail>`` (n counts the fresh names in table order; rows
sharing a ``key`` share one name), ``Prefixed(tail)`` ``<prefix><tail>``, ``Padded`` a
prefixed name filled to an exact length, ``TARGET`` the coupon with plenty of stock.
A create answered 201 creates its coupon; a claim answered 200 claims the target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

__all__ = [
    "JSON_CT",
    "MAX_AMOUNT",
    "MAX_NAME",
    "MIB",
    "ODD_NAMES",
    "SQL_INJECTION",
    "TABLES",
    "TARGET",
    "UNICODE_NAMES",
    "Fresh",
    "Padded",
    "Prefixed",
    "Row",
    "Target",
    "Template",
    "get_path",
]

JSON_CT = (("content-type", "application/json"),)
MAX_NAME = 255
MAX_AMOUNT = 2_147_483_647
MIB = 1024 * 1024

SQL_INJECTION = [
    "'; DROP TABLE coupons; --",
    "' OR '1'='1",
    '" OR ""="',
    "1; DELETE FROM claims",
    "x' UNION SELECT name, amount, remaining_amount, created_at FROM coupons --",
    "'); UPDATE coupons SET remaining_amount = 0; --",
    "admin'--",
    "1' AND pg_sleep(5) --",
    "$$; DROP TABLE claims; $$",
    "E'\\x27'",
    "%' OR name LIKE '%",
    "\\'; TRUNCATE coupons CASCADE; --",
    "name = ANY(ARRAY(SELECT name FROM coupons))",
    "/* comment */ SELECT 1",
    "' ; COPY coupons TO '/tmp/x' --",
]
ODD_NAMES = [
    "'",
    '"',
    "\\",
    "%",
    "%25",
    "%2F",
    "/",
    "a/b/c",
    "?x=1",
    "#frag",
    "..",
    "../../etc/passwd",
    " leading",
    "trailing ",
    "tab\tinside",
    "+plus+",
    "a&b=c",
    "semi;colon",
    "<script>alert(1)</script>",
    "{}",
    "[]",
    "null",
    "\u200b",
    "line\nbreak",
    "bell\x07",
    "esc\x1b[31m",
    "del\x7f",
]
UNICODE_NAMES = [
    "🎟️",
    "👨‍👩‍👧‍👦 family",
    "\u202eevil\u202c",
    "كوبون",
    "קופון",
    "e\u0301",
    "优惠券",
    "Z̤͔ͧ̑̓ä͖̭̈̇lͮ̒ͫǧ̗͚̚o̙̔ͮ̇͐̇",
    "\U0001d518\U0001d52b\U0001d526\U0001d520\U0001d52c\U0001d521\U0001d522",
    "ﷺ",
    "\ufeffbom",
]


def get_path(name: str) -> str:
    """``/api/coupons/{name}`` with every reserved character percent-encoded."""
    return "/api/coupons/" + quote(name, safe="")


@dataclass(frozen=True)
class Fresh:
    tail: str
    key: str | None = None


@dataclass(frozen=True)
class Prefixed:
    tail: str


@dataclass(frozen=True)
class Padded:
    infix: str
    fill: str
    length: int


@dataclass(frozen=True)
class Target:
    pass


TARGET = Target()


@dataclass(frozen=True)
class Template:
    """Raw JSON text whose ``@name@`` becomes ``name`` (for bodies ``json`` cannot write)."""

    text: str
    name: Fresh


@dataclass(frozen=True)
class Row:
    """One case of a table: an endpoint and a body, or a bodiless method and path."""

    group: str
    label: str
    endpoint: Literal["create", "claim", "path"]
    body: Any = b""
    expect: int = 400
    ct: tuple[tuple[str, str], ...] = JSON_CT
    error: str | None = None
    method: str = "POST"


def _create(group: str, label: str, body: Any, expect: int = 400, **kw: Any) -> Row:
    return Row(group, label, "create", body, expect, **kw)


def _claim(group: str, label: str, body: Any, expect: int = 400, **kw: Any) -> Row:
    return Row(group, label, "claim", body, expect, **kw)


def _path(group: str, label: str, path: Any, expect: int = 404, method: str = "GET") -> Row:
    return Row(group, label, "path", path, expect, (), method=method)


def _created(group: str, label: str, name: Any, amount: int = 10, **kw: Any) -> Row:
    return _create(group, label, {"name": name, "amount": amount}, 201, **kw)


def _claimed(group: str, label: str, user: Any) -> Row:
    return _claim(group, label, {"user_id": user, "coupon_name": TARGET}, 200)


AMOUNT_EDGES: list[tuple[str, str]] = [
    ("0", "0"),
    ("-1", "-1"),
    ("2147483648", "2147483648"),
    ("-2147483649", "-2147483649"),
    ("1e10", "1e10"),
    ("1.0", "1.0"),
    ("1.5", "1.5"),
    ("'5'", '"5"'),
    ("true", "true"),
    ("false", "false"),
    ("null", "null"),
    ("[]", "[]"),
    ("{}", "{}"),
    ("10**30", "1" + "0" * 30),
    ("1E2", "1E2"),
    ("NaN", "NaN"),
    ("Infinity", "Infinity"),
    ("-0", "-0"),
    ("0.0", "0.0"),
    ("5000 digits", "9" * 5000),
]
BLANKS = ["", " ", "   ", "\t\n", "\u00a0", "\u3000"]
WRONG_TYPES: list[tuple[str, Any]] = [
    ("int", 5),
    ("true", True),
    ("list", ["a"]),
    ("object", {"a": 1}),
    ("float", 1.5),
]
NOT_JSON_OBJECTS: list[tuple[str, bytes]] = [
    ("array", b"[]"),
    ("array of object", b'[{"name": "x", "amount": 1}]'),
    ("null", b"null"),
    ("number", b"42"),
    ("string", b'"x"'),
    ("true", b"true"),
    ("open brace", b"{"),
    ("missing value", b'{"name": }'),
    ("single quotes", b"{'name': 'x', 'amount': 1}"),
    ("trailing comma", b'{"name": "x", "amount": 1,}'),
    ("no comma", b'{"name": "x" "amount": 1}'),
    ("comment", b'{"name": "x", /* c */ "amount": 1}'),
    ("truncated", b'{"name": "x", "am'),
    ("empty", b""),
    ("whitespace", b"  \n "),
    ("binary", bytes(range(256))),
]
WRONG_CONTENT_TYPES: list[tuple[str, tuple[tuple[str, str], ...]]] = [
    ("no content type", ()),
    ("text/plain", (("content-type", "text/plain"),)),
    ("form", (("content-type", "application/x-www-form-urlencoded"),)),
    ("multipart", (("content-type", "multipart/form-data; boundary=x"),)),
    ("xml", (("content-type", "application/xml"),)),
]
NOT_FOUND_PATHS = [
    "/api/coupon",
    "/api",
    "/",
    "/API/COUPONS",
    "/api/coupons/claim/extra",
    "/nothing/here",
]
_PAD = "p" * (MIB + 10)

#: The hand catalog, group by group, in the order the cases are sent.
TABLES: dict[str, list[Row]] = {
    # 255 is the limit in characters, whatever their bytes.
    "long_names": [
        _created("long_names", "name 255 chars", Padded("-long-", "x", MAX_NAME)),
        _create(
            "long_names",
            "name 256 chars",
            {"name": Padded("-long-", "x", MAX_NAME + 1), "amount": 1},
        ),
        _create("long_names", "name 10000 chars", {"name": "x" * 10_000, "amount": 1}),
        _created("long_names", "name 255 emoji chars", Padded("-emoji-", "🎟", MAX_NAME)),
        _create(
            "long_names",
            "name 256 emoji chars",
            {"name": Padded("-emoji-", "🎟", MAX_NAME + 1), "amount": 1},
        ),
        _claimed("long_names", "user_id 255 chars", Padded("-u-", "u", MAX_NAME)),
        _claim("long_names", "user_id 256 chars", {"user_id": "u" * 256, "coupon_name": TARGET}),
        _claim(
            "long_names", "user_id 10000 chars", {"user_id": "u" * 10_000, "coupon_name": TARGET}
        ),
        _claim("long_names", "coupon_name 256 chars", {"user_id": "u", "coupon_name": "c" * 256}),
        _path("long_names", "GET name 256 chars", get_path("x" * 256)),
        _path("long_names", "GET name 10000 chars", get_path("x" * 10_000)),
    ],
    # Stored and read back literally, never executed.
    "sql_injection": [
        row
        for i, p in enumerate(SQL_INJECTION)
        for row in (
            _created("sql_injection", f"create sqli {i}", Fresh(p)),
            _claimed("sql_injection", f"claim user sqli {i}", Prefixed(f"-{p}")),
            _claim(
                "sql_injection", f"claim coupon sqli {i}", {"user_id": "u", "coupon_name": p}, 404
            ),
            _path("sql_injection", f"GET sqli {i}", get_path(p)),
        )
    ],
    # Quotes, separators, control characters: accepted, round-tripped exactly.
    "special_chars": [
        _created("special_chars", f"create odd {i} {odd!r}", Fresh(odd))
        for i, odd in enumerate(ODD_NAMES)
    ],
    "unicode": [
        row
        for i, uni in enumerate(UNICODE_NAMES)
        for row in (
            _created("unicode", f"create unicode {i}", Fresh(uni)),
            _claimed("unicode", f"claim unicode user {i}", Prefixed(f"-{uni}")),
        )
    ],
    # NUL, blank, lone surrogates: refused.
    "nul_control": [
        _create("nul_control", "name with NUL", {"name": Fresh("a\x00b"), "amount": 1}),
        _create("nul_control", "name only NUL", b'{"name": "\\u0000", "amount": 1}'),
        _claim("nul_control", "user with NUL", {"user_id": "a\x00", "coupon_name": TARGET}),
        *(
            _create("nul_control", f"blank name {i}", {"name": blank, "amount": 1})
            for i, blank in enumerate(BLANKS)
        ),
        _claim("nul_control", "blank user", {"user_id": " ", "coupon_name": TARGET}),
        _create("nul_control", "lone surrogate", b'{"name": "x\\ud800", "amount": 1}'),
        _create("nul_control", "invalid utf-8 bytes", b'{"name": "\xff\xfe", "amount": 1}'),
    ],
    # Edges and overflow.
    "amount": [
        _created("amount", "amount 1", Fresh("amt1"), 1),
        _created("amount", "amount max int", Fresh("amtmax"), MAX_AMOUNT),
        *(
            _create(
                "amount",
                f"amount {label}",
                Template(f'{{"name": "@name@", "amount": {raw}}}', Fresh("amt")),
            )
            for label, raw in AMOUNT_EDGES
        ),
    ],
    # Missing, wrong-typed and extra fields.
    "fields": [
        _create(
            "fields",
            "create missing amount",
            {"name": Fresh("m")},
            error="invalid request: amount is required",
        ),
        _create(
            "fields",
            "create missing name",
            {"amount": 5},
            error="invalid request: name is required",
        ),
        _create("fields", "create empty object", b"{}"),
        _claim(
            "fields",
            "claim missing user_id",
            {"coupon_name": TARGET},
            error="invalid request: user_id is required",
        ),
        _claim(
            "fields",
            "claim missing coupon_name",
            {"user_id": "u"},
            error="invalid request: coupon_name is required",
        ),
        *(
            row
            for label, v in WRONG_TYPES
            for row in (
                _create("fields", f"name is {label}", {"name": v, "amount": 1}),
                _claim("fields", f"user_id is {label}", {"user_id": v, "coupon_name": TARGET}),
            )
        ),
        _create(
            "fields",
            "extra field ignored",
            {"name": Fresh("extra"), "amount": 10, "admin": True, "remaining_amount": 0},
            201,
        ),
        _create(
            "fields",
            "extra nested field ignored",
            {"name": Fresh("extra2"), "amount": 10, "x": [[[[[[1]]]]]]},
            201,
        ),
        _claimed("fields", "claim extra field ignored", Prefixed("-extra-user")),
    ],
    # Not an object, malformed JSON.
    "not_json_object": [
        Row("not_json_object", f"{endpoint} body {label}", endpoint, raw)
        for endpoint in ("create", "claim")
        for label, raw in NOT_JSON_OBJECTS
    ],
    "content_type": [
        *(
            row
            for label, ct in WRONG_CONTENT_TYPES
            for row in (
                _create(
                    "content_type",
                    f"create {label}",
                    {"name": Fresh("ct", key="ct"), "amount": 1},
                    ct=ct,
                ),
                _claim(
                    "content_type", f"claim {label}", {"user_id": "u", "coupon_name": TARGET}, ct=ct
                ),
            )
        ),
        _created(
            "content_type",
            "json with charset",
            Fresh("charset"),
            ct=(("content-type", "application/json; charset=utf-8"),),
        ),
    ],
    # Oversized and deep bodies.
    "size": [
        _create(
            "size", "create body > 1 MiB", {"name": Fresh("big"), "amount": 1, "pad": _PAD}, 413
        ),
        _claim(
            "size", "claim body > 1 MiB", {"user_id": "u", "coupon_name": TARGET, "pad": _PAD}, 413
        ),
        _create("size", "2 MiB of spaces", b" " * (2 * MIB), 413),
    ],
    "nesting": [
        _create("nesting", "100000 nested arrays", b"[" * 100_000 + b"]" * 100_000),
        _create("nesting", "100000 nested objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
        _create(
            "nesting",
            "deep extra field",
            b'{"name": "x", "amount": 1, "d": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
        ),
    ],
    # Wrong methods and paths.
    "routing": [
        # GET /api/coupons is the multi-read (docs/multirow.md): without names, a 400.
        _path("routing", "GET /api/coupons without names", "/api/coupons", 400),
        *(
            _path("routing", f"{method} /api/coupons", "/api/coupons", 405, method)
            for method in ("PUT", "DELETE", "PATCH")
        ),
        _path("routing", "DELETE the target", TARGET, 405, "DELETE"),
        _path("routing", "PUT the target", TARGET, 405, "PUT"),
        _path("routing", "POST /health", "/health", 405, "POST"),
        _path("routing", "GET /api/coupons/claim", "/api/coupons/claim", 404),
        *(_path("routing", f"GET {path}", path, 404) for path in NOT_FOUND_PATHS),
    ],
    # A taken name, a repeated claim.
    "conflict": [
        _create("conflict", "create the target again", {"name": TARGET, "amount": 5}, 409),
        _claimed("conflict", "claim once", Prefixed("-repeat-user")),
        _claim(
            "conflict",
            "claim twice",
            {"user_id": Prefixed("-repeat-user"), "coupon_name": TARGET},
            409,
        ),
    ],
}
