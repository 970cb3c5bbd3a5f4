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

from experiments.hostile_tables import (
    JSON_CT,
    MAX_AMOUNT,
    MAX_NAME,
    MIB,
    SQL_INJECTION,
    TABLES,
    UNICODE_NAMES,
    Fresh,
    Padded,
    Prefixed,
    Row,
    Target,
    Template,
    get_path,
)

__all__ = [
    "TABLES",
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


_PATHS = {"create": "/api/coupons", "claim": "/api/coupons/claim"}


@dataclass
class _Names:
    """Resolves a row's markers for one run: its prefix, its target, its fresh names."""

    prefix: str
    target: str
    count: int = 0
    shared: dict[str, str] = field(default_factory=dict)

    def fresh(self, marker: Fresh) -> str:
        if marker.key is not None and marker.key in self.shared:
            return self.shared[marker.key]
        self.count += 1
        name = f"{self.prefix}-{self.count}-{marker.tail}"
        if marker.key is not None:
            self.shared[marker.key] = name
        return name

    def value(self, v: Any) -> Any:
        if isinstance(v, Fresh):
            return self.fresh(v)
        if isinstance(v, Prefixed):
            return f"{self.prefix}{v.tail}"
        if isinstance(v, Padded):
            head = f"{self.prefix}{v.infix}"
            return head + v.fill * (v.length - len(head))
        if isinstance(v, Target):
            return self.target
        if isinstance(v, dict):
            return {k: self.value(x) for k, x in v.items()}
        return v

    def case(self, row: Row) -> Case:
        if row.endpoint == "path":
            path = get_path(self.target) if isinstance(row.body, Target) else row.body
            return Case(
                row.label, row.group, row.method, path, b"", row.ct, frozenset({row.expect})
            )
        body = self.value(row.body)
        if isinstance(row.body, Template):
            raw = row.body.text.replace("@name@", self.fresh(row.body.name)).encode()
        else:
            raw = body if isinstance(body, bytes) else _j(body)
        effect: Effect = "none"
        extra: dict[str, Any] = {}
        if row.endpoint == "create" and row.expect == 201:
            effect = "create"
            extra = {"coupon": body["name"], "amount": body["amount"]}
        elif row.endpoint == "claim" and row.expect == 200:
            effect = "claim"
            extra = {"coupon": self.target, "user": body["user_id"]}
        return Case(
            row.label,
            row.group,
            "POST",
            _PATHS[row.endpoint],
            raw,
            row.ct,
            frozenset({row.expect}),
            effect,
            error=row.error,
            **extra,
        )


def catalog(prefix: str, target: str) -> list[Case]:
    """The hand-written cases (``TABLES``); ``target`` is a coupon with plenty of stock, created first.

    Names the API should accept carry ``prefix`` so runs never collide; each accepted
    name is unique within the catalog.
    """
    names = _Names(prefix, target)
    return [names.case(row) for rows in TABLES.values() for row in rows]


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
