"""The hostile-input catalog: HTTP requests meant to break the API, each with its expected outcome.

A case is one raw request (method, percent-encoded path, headers, body bytes) with
the statuses the contract allows and the effect it may have: ``none`` (the database
must be unchanged), ``create`` (the named coupon now exists, its name round-trips
exactly through GET) or ``claim`` (the user now holds the target coupon). The hand
catalog (``catalog``) covers the classic attacks and edges; ``generated`` adds
seeded Hypothesis cases judged by the same contract (``expect_body``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import quote

__all__ = [
    "Case",
    "Effect",
    "Endpoint",
    "Generated",
    "catalog",
    "expect_body",
    "generated",
    "get_path",
]

Effect = Literal["none", "create", "claim"]
Endpoint = Literal["create", "claim"]
#: A generated request: endpoint, body bytes, content type (None: no header).
Generated = tuple[Endpoint, bytes, str | None]
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


@dataclass(frozen=True)
class Case:
    """One hostile request and what the contract says must come of it."""

    name: str
    group: str
    method: str
    path: str
    body: bytes = b""
    headers: tuple[tuple[str, str], ...] = JSON_CT
    expect: frozenset[int] = frozenset({400})
    effect: Effect = "none"
    #: For effect create: the coupon name and amount; for claim: the user id.
    coupon: str | None = None
    amount: int | None = None
    user: str | None = None
    #: An exact error message the contract fixes (missing fields).
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict, compare=False)


def get_path(name: str) -> str:
    """``/api/coupons/{name}`` with every reserved character percent-encoded."""
    return "/api/coupons/" + quote(name, safe="")


def _j(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _valid_text(value: object) -> bool:
    if not isinstance(value, str) or not value.strip() or len(value) > MAX_NAME or "\x00" in value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _valid_amount(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= MAX_AMOUNT


def expect_body(
    endpoint: Endpoint,
    body: bytes,
    content_type: str | None,
    *,
    existing: set[str],
    target: str,
    claimed: set[str],
) -> tuple[frozenset[int], Effect]:
    """What the contract says a POST of ``body`` to ``endpoint`` must answer, and its effect.

    ``existing`` are the coupon names that exist, ``target`` the one claims may hit
    (with ``claimed`` its users so far). Mirrors DESIGN.md's input rules, not the code.
    """
    if len(body) > MIB:
        return frozenset({413}), "none"
    if content_type is None or content_type.split(";")[0].strip().lower() != "application/json":
        return frozenset({400}), "none"
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        return frozenset({400}), "none"
    if not isinstance(obj, dict):
        return frozenset({400}), "none"
    if endpoint == "create":
        name, amount = obj.get("name"), obj.get("amount")
        if not (_valid_text(name) and _valid_amount(amount)):
            return frozenset({400}), "none"
        if name in existing:
            return frozenset({409}), "none"
        return frozenset({201}), "create"
    user, coupon = obj.get("user_id"), obj.get("coupon_name")
    if not (_valid_text(user) and _valid_text(coupon)):
        return frozenset({400}), "none"
    if coupon != target and coupon not in existing:
        return frozenset({404}), "none"
    if coupon != target:
        return frozenset({200, 400, 409}), "none"  # not a coupon of this experiment's making
    if user in claimed:
        return frozenset({409}), "none"
    return frozenset({200}), "claim"


def catalog(prefix: str, target: str) -> list[Case]:
    """The hand-written cases; ``target`` is a coupon with plenty of stock, created first.

    Names the API should accept carry ``prefix`` so runs never collide; each accepted
    name is unique within the catalog.
    """
    cases: list[Case] = []
    n = 0

    def name(tail: str) -> str:
        nonlocal n
        n += 1
        return f"{prefix}-{n}-{tail}"

    def create_ok(
        group: str,
        label: str,
        nm: str,
        amount: int = 10,
        ct: tuple[tuple[str, str], ...] = JSON_CT,
        extra: dict[str, Any] | None = None,
    ) -> None:
        body = {"name": nm, "amount": amount, **(extra or {})}
        cases.append(
            Case(
                label,
                group,
                "POST",
                "/api/coupons",
                _j(body),
                ct,
                frozenset({201}),
                "create",
                coupon=nm,
                amount=amount,
            )
        )

    def create_bad(
        group: str,
        label: str,
        body: bytes,
        error: str | None = None,
        ct: tuple[tuple[str, str], ...] = JSON_CT,
        expect: int = 400,
    ) -> None:
        cases.append(
            Case(label, group, "POST", "/api/coupons", body, ct, frozenset({expect}), error=error)
        )

    def claim_ok(group: str, label: str, user: str) -> None:
        cases.append(
            Case(
                label,
                group,
                "POST",
                "/api/coupons/claim",
                _j({"user_id": user, "coupon_name": target}),
                JSON_CT,
                frozenset({200}),
                "claim",
                coupon=target,
                user=user,
            )
        )

    def claim_bad(
        group: str,
        label: str,
        body: bytes,
        error: str | None = None,
        ct: tuple[tuple[str, str], ...] = JSON_CT,
        expect: int = 400,
    ) -> None:
        cases.append(
            Case(
                label,
                group,
                "POST",
                "/api/coupons/claim",
                body,
                ct,
                frozenset({expect}),
                error=error,
            )
        )

    def get(group: str, label: str, path: str, expect: int = 404, method: str = "GET") -> None:
        cases.append(Case(label, group, method, path, b"", (), frozenset({expect})))

    # Long names: 255 is the limit in characters, whatever their bytes.
    base = f"{prefix}-long-"
    create_ok("long_names", "name 255 chars", base + "x" * (MAX_NAME - len(base)))
    create_bad(
        "long_names",
        "name 256 chars",
        _j({"name": base + "x" * (MAX_NAME + 1 - len(base)), "amount": 1}),
    )
    create_bad("long_names", "name 10000 chars", _j({"name": "x" * 10_000, "amount": 1}))
    eb = f"{prefix}-emoji-"
    create_ok("long_names", "name 255 emoji chars", eb + "🎟" * (MAX_NAME - len(eb)))
    create_bad(
        "long_names",
        "name 256 emoji chars",
        _j({"name": eb + "🎟" * (MAX_NAME + 1 - len(eb)), "amount": 1}),
    )
    claim_ok("long_names", "user_id 255 chars", f"{prefix}-u-" + "u" * (MAX_NAME - len(prefix) - 3))
    claim_bad("long_names", "user_id 256 chars", _j({"user_id": "u" * 256, "coupon_name": target}))
    claim_bad(
        "long_names", "user_id 10000 chars", _j({"user_id": "u" * 10_000, "coupon_name": target})
    )
    claim_bad("long_names", "coupon_name 256 chars", _j({"user_id": "u", "coupon_name": "c" * 256}))
    get("long_names", "GET name 256 chars", get_path("x" * 256))
    get("long_names", "GET name 10000 chars", get_path("x" * 10_000))
    # SQL injection: stored and read back literally, never executed.
    for i, p in enumerate(SQL_INJECTION):
        create_ok("sql_injection", f"create sqli {i}", name(p))
        claim_ok("sql_injection", f"claim user sqli {i}", f"{prefix}-{p}")
        claim_bad(
            "sql_injection",
            f"claim coupon sqli {i}",
            _j({"user_id": "u", "coupon_name": p}),
            expect=404,
        )
        get("sql_injection", f"GET sqli {i}", get_path(p))
    # Quotes, separators, control characters: accepted, round-tripped exactly.
    for i, odd in enumerate(ODD_NAMES):
        create_ok("special_chars", f"create odd {i} {odd!r}", name(odd))
    for i, uni in enumerate(UNICODE_NAMES):
        create_ok("unicode", f"create unicode {i}", name(uni))
        claim_ok("unicode", f"claim unicode user {i}", f"{prefix}-{uni}")
    # NUL, blank, lone surrogates: refused.
    create_bad("nul_control", "name with NUL", _j({"name": name("a\x00b"), "amount": 1}))
    create_bad("nul_control", "name only NUL", b'{"name": "\\u0000", "amount": 1}')
    claim_bad("nul_control", "user with NUL", _j({"user_id": "a\x00", "coupon_name": target}))
    for i, blank in enumerate(["", " ", "   ", "\t\n", "\u00a0", "\u3000"]):
        create_bad("nul_control", f"blank name {i}", _j({"name": blank, "amount": 1}))
    claim_bad("nul_control", "blank user", _j({"user_id": " ", "coupon_name": target}))
    create_bad("nul_control", "lone surrogate", b'{"name": "x\\ud800", "amount": 1}')
    create_bad("nul_control", "invalid utf-8 bytes", b'{"name": "\xff\xfe", "amount": 1}')
    # Amount edges and overflow.
    create_ok("amount", "amount 1", name("amt1"), 1)
    create_ok("amount", "amount max int", name("amtmax"), MAX_AMOUNT)
    for label, raw in [
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
    ]:
        create_bad(
            "amount", f"amount {label}", f'{{"name": "{name("amt")}", "amount": {raw}}}'.encode()
        )
    # Missing, wrong-typed and extra fields.
    create_bad(
        "fields",
        "create missing amount",
        _j({"name": name("m")}),
        "invalid request: amount is required",
    )
    create_bad(
        "fields", "create missing name", _j({"amount": 5}), "invalid request: name is required"
    )
    create_bad("fields", "create empty object", b"{}")
    claim_bad(
        "fields",
        "claim missing user_id",
        _j({"coupon_name": target}),
        "invalid request: user_id is required",
    )
    claim_bad(
        "fields",
        "claim missing coupon_name",
        _j({"user_id": "u"}),
        "invalid request: coupon_name is required",
    )
    for label, v in [
        ("int", 5),
        ("true", True),
        ("list", ["a"]),
        ("object", {"a": 1}),
        ("float", 1.5),
    ]:
        create_bad("fields", f"name is {label}", _j({"name": v, "amount": 1}))
        claim_bad("fields", f"user_id is {label}", _j({"user_id": v, "coupon_name": target}))
    create_ok(
        "fields", "extra field ignored", name("extra"), extra={"admin": True, "remaining_amount": 0}
    )
    create_ok("fields", "extra nested field ignored", name("extra2"), extra={"x": [[[[[[1]]]]]]})
    claim_ok("fields", "claim extra field ignored", f"{prefix}-extra-user")
    # Not an object, malformed JSON.
    for endpoint, bad in (("create", create_bad), ("claim", claim_bad)):
        for label, raw_body in [
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
        ]:
            bad("not_json_object", f"{endpoint} body {label}", raw_body)
    # Content types.
    good = _j({"name": name("ct"), "amount": 1})
    for label, ct in [
        ("no content type", ()),
        ("text/plain", (("content-type", "text/plain"),)),
        ("form", (("content-type", "application/x-www-form-urlencoded"),)),
        ("multipart", (("content-type", "multipart/form-data; boundary=x"),)),
        ("xml", (("content-type", "application/xml"),)),
    ]:
        create_bad("content_type", f"create {label}", good, ct=ct)
        claim_bad(
            "content_type", f"claim {label}", _j({"user_id": "u", "coupon_name": target}), ct=ct
        )
    create_ok(
        "content_type",
        "json with charset",
        name("charset"),
        ct=(("content-type", "application/json; charset=utf-8"),),
    )
    # Oversized and deep bodies.
    pad = "p" * (MIB + 10)
    create_bad(
        "size",
        "create body > 1 MiB",
        _j({"name": name("big"), "amount": 1, "pad": pad}),
        expect=413,
    )
    claim_bad(
        "size",
        "claim body > 1 MiB",
        _j({"user_id": "u", "coupon_name": target, "pad": pad}),
        expect=413,
    )
    create_bad("size", "2 MiB of spaces", b" " * (2 * MIB), expect=413)
    create_bad("nesting", "100000 nested arrays", b"[" * 100_000 + b"]" * 100_000)
    create_bad("nesting", "100000 nested objects", b'{"a":' * 100_000 + b"1" + b"}" * 100_000)
    create_bad(
        "nesting",
        "deep extra field",
        b'{"name": "x", "amount": 1, "d": ' + b"[" * 50_000 + b"]" * 50_000 + b"}",
    )
    # Wrong methods and paths.
    for method in ("GET", "PUT", "DELETE", "PATCH"):
        get(
            "routing",
            f"{method} /api/coupons",
            "/api/coupons",
            405,
            method,
        )
    get("routing", "DELETE the target", get_path(target), 405, "DELETE")
    get("routing", "PUT the target", get_path(target), 405, "PUT")
    get("routing", "POST /health", "/health", 405, "POST")
    get("routing", "GET /api/coupons/claim", "/api/coupons/claim", 404)
    for path in (
        "/api/coupon",
        "/api",
        "/",
        "/API/COUPONS",
        "/api/coupons/claim/extra",
        "/nothing/here",
    ):
        get("routing", f"GET {path}", path, 404)
    # Conflicts: a taken name, a repeated claim.
    cases.append(
        Case(
            "create the target again",
            "conflict",
            "POST",
            "/api/coupons",
            _j({"name": target, "amount": 5}),
            JSON_CT,
            frozenset({409}),
        )
    )
    repeat = f"{prefix}-repeat-user"
    claim_ok("conflict", "claim once", repeat)
    cases.append(
        Case(
            "claim twice",
            "conflict",
            "POST",
            "/api/coupons/claim",
            _j({"user_id": repeat, "coupon_name": target}),
            JSON_CT,
            frozenset({409}),
        )
    )
    return cases


def generated(prefix: str, target: str, seed: int, count: int = 1000) -> list[Generated]:
    """``count`` seeded Hypothesis bodies: (endpoint, body, content type).

    Values mix valid text, edge strings, numbers of every JSON kind, nesting and
    missing fields; raw byte bodies and odd content types come in now and then.
    The expectation is computed when sent (``expect_body``), since it depends on
    what earlier cases created.
    """
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hseed
    from hypothesis import strategies as st

    text = st.one_of(
        st.text(max_size=40),
        st.text(alphabet=st.characters(codec="utf-8"), min_size=250, max_size=260),
        st.sampled_from(["", " ", "\x00", "'", "%", "/", *SQL_INJECTION[:5], *UNICODE_NAMES[:4]]),
    )
    scalar = st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**40), max_value=2**40),
        st.sampled_from([0, 1, -1, MAX_AMOUNT, MAX_AMOUNT + 1, 2**63]),
        st.floats(allow_nan=False, allow_infinity=False),
        text,
    )
    value = st.recursive(
        scalar,
        lambda kids: (
            st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3)
        ),
        max_leaves=6,
    )
    missing = st.just(...)

    out: list[Generated] = []

    @st.composite
    def case(draw: st.DrawFn) -> Generated:
        endpoint: Endpoint = draw(st.sampled_from(["create", "claim"]))
        ct = draw(st.sampled_from(["application/json"] * 8 + ["text/plain", None]))
        if draw(st.integers(0, 19)) == 0:
            return endpoint, draw(st.binary(max_size=60)), ct
        k = len(out)
        if endpoint == "create":
            nm = draw(st.one_of(missing, value, text.map(lambda t: f"{prefix}g{k}:{t}")))
            amount = draw(st.one_of(missing, value, st.integers(1, MAX_AMOUNT)))
            body = {"name": nm, "amount": amount}
        else:
            user = draw(st.one_of(missing, value, text.map(lambda t: f"{prefix}g{k}:{t}")))
            coupon = draw(st.one_of(missing, st.just(target), value))
            body = {"user_id": user, "coupon_name": coupon}
        body = {k2: v for k2, v in body.items() if v is not ...}
        if draw(st.booleans()):
            body["extra"] = draw(value)
        raw = json.dumps(body, ensure_ascii=draw(st.booleans()), allow_nan=False)
        return endpoint, raw.encode("utf-8", "surrogatepass"), ct

    @settings(
        max_examples=count,
        database=None,
        phases=[Phase.generate],
        deadline=None,
        suppress_health_check=list(HealthCheck),
    )
    @hseed(seed)
    @given(case())
    def collect(c: Generated) -> None:
        if len(out) < count:
            out.append(c)

    rounds = 0
    while len(out) < count and rounds < 5:
        collect()
        rounds += 1
    return out
