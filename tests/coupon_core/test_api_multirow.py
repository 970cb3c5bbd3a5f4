"""The multi-row routes' contract: campaign on create, bundles, the multi-coupon read.

Called in-process (``client``, tests/coupon_core/conftest.py); test_api.py runs a
bundle claim and a multi-coupon read over uvicorn too.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest


@pytest.fixture(scope="module")
def api_strategy() -> str:
    """This module's service claims with ``atomic`` (tests/coupon_core/conftest.py)."""
    return "atomic"


def snapshot(url: str) -> tuple[int, ...]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM coupons), (SELECT count(*) FROM claims),"
            " (SELECT coalesce(sum(remaining_amount), 0) FROM coupons),"
            " (SELECT count(*) FROM campaign_claims)"
        ).fetchone()
    assert row is not None
    return tuple(int(x) for x in row)


def create(client: httpx.Client, name: str, amount: int = 5, **extra: Any) -> None:
    r = client.post("/api/coupons", json={"name": name, "amount": amount, **extra})
    assert (r.status_code, r.content) == (201, b""), r.text


def test_campaign_claims(client: httpx.Client, unique: str) -> None:
    create(client, f"{unique}-a", campaign=f"{unique}-x")
    create(client, f"{unique}-b", campaign=f"{unique}-x")
    create(client, f"{unique}-c", campaign=None)  # null: in no campaign
    r = client.post("/api/coupons/claim", json={"user_id": "u1", "coupon_name": f"{unique}-a"})
    assert r.status_code == 200
    r = client.post("/api/coupons/claim", json={"user_id": "u1", "coupon_name": f"{unique}-b"})
    assert (r.status_code, r.json()) == (409, {"error": "campaign already claimed by user"})
    assert r.headers["content-type"] == "application/json"
    r = client.post("/api/coupons/claim", json={"user_id": "u1", "coupon_name": f"{unique}-c"})
    assert r.status_code == 200
    # The coupon view is unchanged: no campaign field in it.
    r = client.get(f"/api/coupons/{unique}-b")
    assert r.json() == {"name": f"{unique}-b", "amount": 5, "remaining_amount": 5, "claimed_by": []}


@pytest.mark.parametrize(
    ("campaign", "message"),
    [
        ("", "invalid request: campaign must not be blank"),
        ("   ", "invalid request: campaign must not be blank"),
        (7, "invalid request: campaign must be a string"),
        (["x"], "invalid request: campaign must be a string"),
        ("x" * 256, "invalid request: campaign must be at most 255 characters"),
        ("a\x00b", "invalid request: campaign must not contain NUL characters"),
    ],
)
def test_bad_campaign(
    client: httpx.Client, db_url: str, unique: str, campaign: object, message: str
) -> None:
    before = snapshot(db_url)
    r = client.post("/api/coupons", json={"name": f"{unique}-a", "amount": 1, "campaign": campaign})
    assert (r.status_code, r.json()) == (400, {"error": message})
    assert snapshot(db_url) == before


def test_bundle_claim(client: httpx.Client, unique: str) -> None:
    for s in "ab":
        create(client, f"{unique}-{s}", 1)
    body = {"user_id": "u1", "coupon_names": [f"{unique}-b", f"{unique}-a"]}
    r = client.post("/api/bundles/claim", json=body)
    assert (r.status_code, r.content) == (200, b"")
    for name in (f"{unique}-a", f"{unique}-b"):
        assert client.get(f"/api/coupons/{name}").json()["claimed_by"] == ["u1"]
    r = client.post("/api/bundles/claim", json=body)
    assert (r.status_code, r.json()) == (409, {"error": "coupon already claimed by user"})
    r = client.post("/api/bundles/claim", json={**body, "user_id": "u2"})
    assert (r.status_code, r.json()) == (400, {"error": "coupon out of stock"})
    r = client.post("/api/bundles/claim", json={"user_id": "u3", "coupon_names": [f"{unique}-z"]})
    assert (r.status_code, r.json()) == (404, {"error": "coupon not found"})


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"coupon_names": ["a"]}, "user_id is required"),
        ({"user_id": "u"}, "coupon_names is required"),
        ({"user_id": "u", "coupon_names": None}, "coupon_names is required"),
        ({"user_id": "u", "coupon_names": "a,b"}, "coupon_names must be a list of strings"),
        ({"user_id": "u", "coupon_names": {"a": 1}}, "coupon_names must be a list of strings"),
        ({"user_id": "u", "coupon_names": []}, "coupon_names must not be empty"),
        ({"user_id": "u", "coupon_names": ["a", 1]}, "coupon_names[1] must be a string"),
        ({"user_id": "u", "coupon_names": ["a", ""]}, "coupon_names[1] must not be blank"),
        ({"user_id": "u", "coupon_names": ["a", "a"]}, "coupon_names must not repeat a name"),
        (
            {"user_id": "u", "coupon_names": [str(i) for i in range(101)]},
            "coupon_names must hold at most 100 names",
        ),
    ],
)
def test_bundle_bad_input(
    client: httpx.Client, db_url: str, unique: str, body: dict[str, Any], message: str
) -> None:
    create(client, f"{unique}-a")
    body = {
        k: ([f"{unique}-a" if n == "a" else n for n in v] if isinstance(v, list) else v)
        for k, v in body.items()
    }
    before = snapshot(db_url)
    r = client.post("/api/bundles/claim", json=body)
    assert (r.status_code, r.json()) == (400, {"error": f"invalid request: {message}"})
    assert snapshot(db_url) == before


def test_bundle_route_methods_and_bodies(client: httpx.Client) -> None:
    r = client.get("/api/bundles/claim")
    assert (r.status_code, r.headers["allow"]) == (405, "POST")
    r = client.post(
        "/api/bundles/claim", content=b"[1]", headers={"content-type": "application/json"}
    )
    assert (r.status_code, r.json()) == (
        400,
        {"error": "invalid request: body must be a JSON object"},
    )
    r = client.post(
        "/api/bundles/claim", content=b"{", headers={"content-type": "application/json"}
    )
    assert (r.status_code, r.json()) == (400, {"error": "invalid request: body is not valid JSON"})


def names_query(*names: str) -> str:
    """``?names=`` with each name percent-encoded, commas included, joined by raw commas."""
    return "/api/coupons?names=" + ",".join(quote(n, safe="") for n in names)


def test_multi_read(client: httpx.Client, unique: str) -> None:
    odd = f"{unique} a,b/%+ü"
    create(client, f"{unique}-1", 3)
    create(client, odd, 4)
    client.post("/api/coupons/claim", json={"user_id": "u1", "coupon_name": odd})
    r = client.get(names_query(odd, f"{unique}-none", f"{unique}-1"))
    assert r.status_code == 200
    assert r.json() == {
        "coupons": [
            {"name": odd, "amount": 4, "remaining_amount": 3, "claimed_by": ["u1"]},
            {"name": f"{unique}-1", "amount": 3, "remaining_amount": 3, "claimed_by": []},
        ]
    }
    # Repeated parameters, as httpx's params= (form encoding: a comma is %2C) sends them.
    r = client.get("/api/coupons", params=[("names", f"{unique}-1"), ("names", odd)])
    assert [c["name"] for c in r.json()["coupons"]] == [f"{unique}-1", odd]
    # Only missing ones: an empty list, not a 404.
    r = client.get(names_query(f"{unique}-none"))
    assert (r.status_code, r.json()) == (200, {"coupons": []})


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("", "names is required"),
        ("?other=1", "names is required"),
        ("?names=", "names must not hold a blank name"),
        ("?names=a,,b", "names must not hold a blank name"),
        ("?names=a,a", "names must not repeat a name"),
        ("?names=a&names=a", "names must not repeat a name"),
        ("?names=%FF", "names must be UTF-8 text"),
        ("?names=" + ",".join(str(i) for i in range(101)), "names must hold at most 100 names"),
    ],
)
def test_multi_read_bad_query(client: httpx.Client, query: str, message: str) -> None:
    r = client.get(f"/api/coupons{query}")
    assert (r.status_code, r.json()) == (400, {"error": f"invalid request: {message}"})


def test_coupons_route_methods(client: httpx.Client) -> None:
    r = client.put("/api/coupons", json={})
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD, POST")


def test_openapi_describes_the_new_routes(client: httpx.Client) -> None:
    doc = client.get("/openapi.json").json()
    assert doc["paths"]["/api/bundles/claim"]["post"]["operationId"] == "claimBundle"
    assert doc["paths"]["/api/coupons"]["get"]["parameters"][0]["name"] == "names"
    assert "campaign" in doc["components"]["schemas"]["CreateCoupon"]["properties"]
    bundle = doc["components"]["schemas"]["ClaimBundle"]["properties"]["coupon_names"]
    assert (bundle["minItems"], bundle["maxItems"], bundle["uniqueItems"]) == (1, 100, True)
