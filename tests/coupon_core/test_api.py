"""The HTTP contract, a real PostgreSQL behind it: in-process, and over uvicorn on loopback.

``client`` calls the app in-process (tests/coupon_core/conftest.py): the contract's
statuses, bodies and headers. ``wire`` and ``server`` are uvicorn on loopback, for
what only a server shows: a raw socket, a body cut off mid-upload, HEAD (the server
drops the body), 120 connections at once; ``test_the_same_contract_over_uvicorn_and_
in_process`` runs one table of requests through both and finds the same replies.
"""

from __future__ import annotations

import json
import re
import socket
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import httpx
import psycopg
import pytest

from coupon_core import CouponService, InvalidRequest
from coupon_core.api import CouponApp, create_app
from coupon_core.server import RunningServer
from coupon_core.validation import validate_text
from tests.fix_asgi import ASGIApp

MAX = 2_147_483_647
MIB = 1024 * 1024


def snapshot(url: str) -> tuple[int, int, int]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM coupons), (SELECT count(*) FROM claims),"
            " (SELECT coalesce(sum(remaining_amount), 0) FROM coupons)"
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]), int(row[2])


def path(name: str) -> str:
    # Every byte but letters and digits encoded, dots included, so no client may
    # normalise a "." or ".." segment away.
    return "/api/coupons/" + quote(name, safe="").replace(".", "%2E")


def post_raw(client: httpx.Client, url: str, body: bytes, ctype: str | None) -> httpx.Response:
    headers = {} if ctype is None else {"content-type": ctype}
    return client.post(url, content=body, headers=headers)


# -- the contract table ---------------------------------------------------------------


def test_create_claim_get(client: httpx.Client, unique: str) -> None:
    name = f"{unique}-c"
    r = client.post("/api/coupons", json={"name": name, "amount": 2})
    assert (r.status_code, r.content) == (201, b"")
    r = client.post("/api/coupons", json={"name": name, "amount": 9})
    assert (r.status_code, r.json()) == (409, {"error": "coupon already exists"})
    for user in ["zoe", "al"]:
        r = client.post("/api/coupons/claim", json={"user_id": user, "coupon_name": name})
        assert (r.status_code, r.content) == (200, b"")
    r = client.post("/api/coupons/claim", json={"user_id": "zoe", "coupon_name": name})
    assert (r.status_code, r.json()) == (409, {"error": "coupon already claimed by user"})
    r = client.post("/api/coupons/claim", json={"user_id": "bo", "coupon_name": name})
    assert (r.status_code, r.json()) == (400, {"error": "coupon out of stock"})
    r = client.get(path(name))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert r.json() == {
        "name": name,
        "amount": 2,
        "remaining_amount": 0,
        "claimed_by": ["zoe", "al"],
    }


def test_new_coupon_has_empty_claimed_by_list(client: httpx.Client, unique: str) -> None:
    client.post("/api/coupons", json={"name": f"{unique}-e", "amount": 1})
    assert client.get(path(f"{unique}-e")).json()["claimed_by"] == []


def test_not_found(client: httpx.Client, db_url: str, unique: str) -> None:
    before = snapshot(db_url)
    r = client.get(path(f"{unique}-nope"))
    assert (r.status_code, r.json()) == (404, {"error": "coupon not found"})
    r = client.post("/api/coupons/claim", json={"user_id": "u", "coupon_name": f"{unique}-no"})
    assert (r.status_code, r.json()) == (404, {"error": "coupon not found"})
    assert snapshot(db_url) == before


def test_health(client: httpx.Client) -> None:
    r = client.get("/health")
    assert (r.status_code, r.json()) == (200, {"status": "healthy"})


def test_unknown_path_and_wrong_method_are_json(client: httpx.Client) -> None:
    r = client.get("/api/nothing")
    assert (r.status_code, r.json()) == (404, {"error": "not found"})
    r = client.get("/health/")
    assert r.status_code == 404
    r = client.delete("/api/coupons")
    assert (r.status_code, r.json()) == (405, {"error": "method not allowed"})
    assert r.headers["allow"] == "GET, HEAD, POST"
    r = client.put("/api/coupons/claim", json={})
    assert r.status_code == 405
    r = client.post("/health")
    assert r.status_code == 405


# -- input rules at their boundaries --------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"name": "N" * 256, "amount": 1}, "name must be at most 255 characters"),
        ({"name": "   ", "amount": 1}, "name must not be blank"),
        ({"name": "", "amount": 1}, "name must not be blank"),
        ({"name": "a\x00b", "amount": 1}, "name must not contain NUL characters"),
        ({"name": 5, "amount": 1}, "name must be a string"),
        ({"name": None, "amount": 1}, "name is required"),
        ({"amount": 1}, "name is required"),
        ({"name": "{u}"}, "amount is required"),
        ({"name": "{u}", "amount": None}, "amount is required"),
        ({"name": "{u}", "amount": 0}, "amount must be between 1 and 2147483647"),
        ({"name": "{u}", "amount": MAX + 1}, "amount must be between 1 and 2147483647"),
        ({"name": "{u}", "amount": 1.0}, "amount must be an integer"),
        ({"name": "{u}", "amount": "5"}, "amount must be an integer"),
        ({"name": "{u}", "amount": True}, "amount must be an integer"),
        ({"name": "{u}", "amount": [1]}, "amount must be an integer"),
        ({}, "name is required"),
    ],
)
def test_create_rejects(
    client: httpx.Client, db_url: str, unique: str, body: dict[str, Any], message: str
) -> None:
    body = {k: (unique if v == "{u}" else v) for k, v in body.items()}
    before = snapshot(db_url)
    r = client.post("/api/coupons", json=body)
    assert (r.status_code, r.json()) == (400, {"error": f"invalid request: {message}"})
    assert snapshot(db_url) == before


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"coupon_name": "c"}, "user_id is required"),
        ({"user_id": "u"}, "coupon_name is required"),
        ({"user_id": "U" * 256, "coupon_name": "c"}, "user_id must be at most 255 characters"),
        ({"user_id": "u", "coupon_name": " "}, "coupon_name must not be blank"),
        ({"user_id": 1, "coupon_name": "c"}, "user_id must be a string"),
        ({"user_id": "u", "coupon_name": False}, "coupon_name must be a string"),
    ],
)
def test_claim_rejects(
    client: httpx.Client, db_url: str, unique: str, body: dict[str, Any], message: str
) -> None:
    client.post("/api/coupons", json={"name": f"{unique}-c", "amount": 3})
    body = {k: (f"{unique}-c" if v == "c" else v) for k, v in body.items()}
    before = snapshot(db_url)
    r = client.post("/api/coupons/claim", json=body)
    assert (r.status_code, r.json()) == (400, {"error": f"invalid request: {message}"})
    assert snapshot(db_url) == before


def test_boundaries_accepted(client: httpx.Client, unique: str) -> None:
    name = (unique + "n" * 255)[:255]
    assert client.post("/api/coupons", json={"name": name, "amount": 1}).status_code == 201
    r = client.post("/api/coupons", json={"name": f"{unique}-max", "amount": MAX})
    assert r.status_code == 201
    assert client.get(path(f"{unique}-max")).json()["remaining_amount"] == MAX
    r = client.post("/api/coupons/claim", json={"user_id": "u" * 255, "coupon_name": name})
    assert r.status_code == 200


def test_unknown_fields_are_ignored(client: httpx.Client, unique: str) -> None:
    body = {"name": f"{unique}-x", "amount": 4, "remaining_amount": 0, "admin": True}
    assert client.post("/api/coupons", json=body).status_code == 201
    assert client.get(path(f"{unique}-x")).json()["remaining_amount"] == 4


@pytest.mark.parametrize(
    ("body", "ctype", "message"),
    [
        (b'{"name": "a", "amount": 1', "application/json", "body is not valid JSON"),
        (b"", "application/json", "body is not valid JSON"),
        (b"\xff\xfe{}", "application/json", "body is not valid JSON"),
        (b"null", "application/json", "body must be a JSON object"),
        (b"42", "application/json", "body must be a JSON object"),
        (b"[1]", "application/json", "body must be a JSON object"),
        (b'"x"', "application/json", "body must be a JSON object"),
        (b"[" * 100_000 + b"]" * 100_000, "application/json", "body is not valid JSON"),
        (b'{"a":' * 100_000 + b"1" + b"}" * 100_000, "application/json", "body is not valid JSON"),
        (b'{"name": "a", "amount": 1}', None, "content type must be application/json"),
        (b'{"name": "a", "amount": 1}', "text/plain", "content type must be application/json"),
        (
            b'{"name": "a", "amount": 1}',
            "application/jsonx",
            "content type must be application/json",
        ),
    ],
    ids=[
        "truncated",
        "empty",
        "not-utf8",
        "null",
        "42",
        "list",
        "string",
        "deep-list",
        "deep-object",
        "no-ctype",
        "text-plain",
        "bad-ctype",
    ],
)
def test_bad_bodies_are_400(
    client: httpx.Client, db_url: str, body: bytes, ctype: str | None, message: str
) -> None:
    before = snapshot(db_url)
    for url in ["/api/coupons", "/api/coupons/claim"]:
        r = post_raw(client, url, body, ctype)
        assert (r.status_code, r.json()) == (400, {"error": f"invalid request: {message}"})
    assert snapshot(db_url) == before


def test_content_type_parameters_are_accepted(client: httpx.Client, unique: str) -> None:
    body = json.dumps({"name": f"{unique}-p", "amount": 1}).encode()
    r = post_raw(client, "/api/coupons", body, "Application/JSON; charset=utf-8")
    assert r.status_code == 201


def _padded(name: str, size: int) -> bytes:
    """A valid create body of exactly ``size`` bytes."""
    empty = json.dumps({"name": name, "amount": 1, "pad": ""}).encode()
    body = json.dumps({"name": name, "amount": 1, "pad": "p" * (size - len(empty))}).encode()
    assert len(body) == size
    return body


def test_body_of_exactly_1_mib_is_accepted(client: httpx.Client, unique: str) -> None:
    r = post_raw(client, "/api/coupons", _padded(f"{unique}-big", MIB), "application/json")
    assert r.status_code == 201


def test_body_over_1_mib_is_413(client: httpx.Client, db_url: str, unique: str) -> None:
    before = snapshot(db_url)
    r = post_raw(client, "/api/coupons", _padded(f"{unique}-big", MIB + 1), "application/json")
    assert (r.status_code, r.json()) == (413, {"error": "request body too large"})
    assert snapshot(db_url) == before


@pytest.mark.parametrize("via", ["wire", "client"])
def test_streamed_body_over_1_mib_is_413(
    request: pytest.FixtureRequest, via: str, db_url: str, unique: str
) -> None:
    # No Content-Length (chunked): the limit is enforced while reading. Over uvicorn the
    # server answers while the client is still sending; in-process the app gets the
    # body in the client's 64 KiB chunks.
    c: httpx.Client = request.getfixturevalue(via)
    body = _padded(f"{unique}-big", 2 * MIB)

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(body), 64 * 1024):
            yield body[i : i + 64 * 1024]

    before = snapshot(db_url)
    r = c.post("/api/coupons", content=chunks(), headers={"content-type": "application/json"})
    assert (r.status_code, r.json()) == (413, {"error": "request body too large"})
    assert snapshot(db_url) == before


def test_huge_declared_length_is_413_before_any_body(server: RunningServer) -> None:
    # Only headers are sent: the server must answer from Content-Length alone.
    with socket.create_connection((server.host, server.port), timeout=10) as sock:
        sock.sendall(
            b"POST /api/coupons HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 10000000000\r\n\r\n"
        )
        reply = _read_response(sock)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert reply.endswith(b'{"error":"request body too large"}')


def _read_response(sock: socket.socket) -> bytes:
    """One whole HTTP response: headers, then exactly Content-Length bytes of body.

    One recv() may return the headers without the body (seen under CPU load); read
    until the declared length, or until the server closes the connection.
    """
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        (
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")[1:]
            if line.lower().startswith(b"content-length:")
        ),
        None,
    )
    while length is None or len(body) < length:
        chunk = sock.recv(4096)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


# -- names: any accepted name reads back ----------------------------------------------


@pytest.mark.parametrize(
    "suffix",
    [
        "a/b/c",
        "/leading",
        "trailing/",
        "50%off",
        "%2F",
        'it\'s "quoted"',
        "back\\slash",
        "?q=1&x#frag",
        "sp ace+plus",
        "..",
        "../escape",
        "🎉 emoji 🎟️",
        "שלום עולם مرحبا",
        "claim",
        "\u200b\ufeffzero-width",
        "new\nline",
        "ends with newline\n",
        "tab\tand\r\ncrlf",
    ],
)
def test_names_round_trip(client: httpx.Client, unique: str, suffix: str) -> None:
    name = f"{unique}{suffix}" if suffix != "claim" else "claim"
    r = client.post("/api/coupons", json={"name": name, "amount": 3})
    assert r.status_code in (201, 409)  # "claim" is shared across runs
    r = client.get(path(name))
    assert r.status_code == 200
    assert r.json()["name"] == name


def test_255_character_unicode_name_round_trips(client: httpx.Client, unique: str) -> None:
    name = (unique + '🎉é/%"ש' * 60)[:255]
    assert len(name) == 255
    assert client.post("/api/coupons", json={"name": name, "amount": 1}).status_code == 201
    r = client.get(path(name))
    assert (r.status_code, r.json()["name"]) == (200, name)


@pytest.mark.parametrize("name", ["x" * 10_000, "a%00b", "%FF%FE", "x" * 256], ids=str.__len__)
def test_names_no_coupon_can_have_are_404(client: httpx.Client, name: str) -> None:
    r = client.get("/api/coupons/" + name)
    assert (r.status_code, r.json()) == (404, {"error": "coupon not found"})


def test_empty_name_is_404(client: httpx.Client) -> None:
    r = client.get("/api/coupons/")
    assert (r.status_code, r.json()) == (404, {"error": "coupon not found"})


# -- the document and the load path ---------------------------------------------------


def test_openapi_document(client: httpx.Client) -> None:
    r = client.get("/openapi.json")
    assert r.status_code == 200
    doc = r.json()
    assert doc["openapi"].startswith("3.1")
    assert set(doc["paths"]) == {
        "/api/bundles/claim",  # docs/multirow.md
        "/api/coupons",
        "/api/coupons/claim",
        "/api/coupons/{name}",
        "/health",
    }
    create = doc["paths"]["/api/coupons"]["post"]
    assert set(create["responses"]) == {"201", "400", "409", "413", "500", "503"}
    claim = doc["paths"]["/api/coupons/claim"]["post"]
    assert set(claim["responses"]) == {"200", "400", "404", "409", "413", "500", "503"}
    schema = doc["components"]["schemas"]["CreateCoupon"]
    assert schema["properties"]["amount"] == {"type": "integer", "minimum": 1, "maximum": MAX}
    assert schema["properties"]["name"]["maxLength"] == 255
    # The document's pattern agrees with the service's rules (generated cases rely on it).
    pattern = re.compile(schema["properties"]["name"]["pattern"])
    for text in ["a", " a ", "🎉", "  ", "", "a\x00", "\x00", "\t\n"]:
        try:
            validate_text("name", text)
            valid = True
        except InvalidRequest:
            valid = False
        assert bool(pattern.search(text)) == valid, repr(text)


@pytest.mark.slow
def test_http_stampede_beyond_40_threads(server: RunningServer, unique: str) -> None:
    # 120 claims at once, more than anyio's default 40 worker threads: all complete,
    # exactly stock of them succeed.
    name = f"{unique}-stampede"
    with httpx.Client(base_url=server.url) as c:
        assert c.post("/api/coupons", json={"name": name, "amount": 10}).status_code == 201
    n = 120
    barrier = threading.Barrier(n, timeout=30)
    statuses: list[int] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30) as c:
            c.get("/health")  # connect first, so the barrier releases requests, not handshakes
            barrier.wait()
            r = c.post("/api/coupons/claim", json={"user_id": f"u{i}", "coupon_name": name})
        with lock:
            statuses.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert Counter(statuses) == Counter({200: 10, 400: 110})


def test_unexpected_error_is_500_and_claim_rolled_back(
    db_url: str, unique: str, in_process: Callable[[ASGIApp], httpx.Client]
) -> None:
    def fault(point: str) -> None:
        # A bug between the claim's insert and its decrement.
        raise RuntimeError(f"boom at {point} with secret detail")

    svc = CouponService.connect(db_url, strategy="row_lock", pool_max=2)
    app = create_app(svc)
    try:
        c = in_process(app)
        name = f"{unique}-bug"
        assert c.post("/api/coupons", json={"name": name, "amount": 3}).status_code == 201
        svc.fault = fault
        before = snapshot(db_url)
        r = c.post("/api/coupons/claim", json={"user_id": "u", "coupon_name": name})
        assert (r.status_code, r.json()) == (500, {"error": "internal server error"})
        assert snapshot(db_url) == before
        svc.fault = None
        r = c.post("/api/coupons/claim", json={"user_id": "u", "coupon_name": name})
        assert r.status_code == 200
        assert c.get(path(name)).json()["remaining_amount"] == 2
    finally:
        app.close()
        svc.close()


def test_head_and_other_methods_on_the_get_routes(wire: httpx.Client, unique: str) -> None:
    # Over uvicorn: the app sends a HEAD its GET's body and the server drops it
    # (httpx's ASGITransport drops it too, so in-process would show nothing).
    r = wire.head("/health")
    assert (r.status_code, r.content, r.headers["content-type"]) == (200, b"", "application/json")
    r = wire.head(path(f"{unique}-none"))
    assert (r.status_code, r.content) == (404, b"")
    r = wire.post(path(f"{unique}-none"), json={})
    assert (r.status_code, r.json()) == (405, {"error": "method not allowed"})
    assert r.headers["allow"] == "GET, HEAD"
    r = wire.delete("/openapi.json")
    assert (r.status_code, r.headers["allow"]) == (405, "GET, HEAD")
    # The same fixed reply, sent again and again, is the same bytes every time.
    bodies = {wire.get("/api/nothing").content for _ in range(3)}
    assert bodies == {b'{"error":"not found"}'}


# -- one table, both paths: uvicorn on loopback and in-process give the same replies --

# (method, path, JSON body or raw bytes, content type, the status the contract gives).
# ``{c}`` is a coupon made for the run; each path gets its own, so both see fresh state.
_SMOKE: list[tuple[str, str, object, str | None, int]] = [
    ("POST", "/api/coupons", {"name": "{c}", "amount": 2}, "application/json", 201),
    ("POST", "/api/coupons", {"name": "{c}", "amount": 9}, "application/json", 409),
    ("POST", "/api/coupons/claim", {"user_id": "zoe", "coupon_name": "{c}"}, None, 200),
    ("POST", "/api/coupons/claim", {"user_id": "zoe", "coupon_name": "{c}"}, None, 409),
    ("POST", "/api/coupons/claim", {"user_id": "al", "coupon_name": "{c}"}, None, 200),
    ("POST", "/api/coupons/claim", {"user_id": "bo", "coupon_name": "{c}"}, None, 400),
    ("POST", "/api/bundles/claim", {"user_id": "bo", "coupon_names": ["{c}"]}, None, 400),
    ("GET", "/api/coupons/{c}", None, None, 200),
    ("GET", "/api/coupons/{c}-none", None, None, 404),
    ("GET", "/api/coupons?names={c},{c}-none", None, None, 200),
    ("GET", "/api/coupons/%FF%FE", None, None, 404),
    ("GET", "/api/coupons/", None, None, 404),
    ("GET", "/health", None, None, 200),
    ("GET", "/openapi.json", None, None, 200),
    ("GET", "/api/nothing", None, None, 404),
    ("DELETE", "/api/coupons", None, None, 405),
    ("PUT", "/api/coupons/claim", {}, None, 405),
    ("POST", "/api/coupons", b"[1]", "application/json", 400),
    ("POST", "/api/coupons", b'{"name": "x"', "application/json", 400),
    ("POST", "/api/coupons", b'{"name": "x", "amount": 1}', "text/plain", 400),
    ("POST", "/api/coupons", {"name": "{c}-x", "amount": 0}, None, 400),
    ("POST", "/api/coupons", _padded("{c}-big", MIB + 1), "application/json", 413),
]
_COMPARED_HEADERS = ("content-type", "content-length", "allow")


def _smoke(c: httpx.Client, coupon: str) -> list[tuple[int, dict[str, str], bytes]]:
    """The table's replies through ``c``: status, the compared headers, the body with
    the run's coupon name written back as ``{c}``."""
    replies = []
    for method, url, body, ctype, status in _SMOKE:
        url = url.replace("{c}", quote(coupon, safe=""))
        content: bytes | None = None
        if isinstance(body, bytes):
            content = body.replace(b"{c}", coupon.encode())
        elif body is not None:
            content = json.dumps(body).replace("{c}", coupon).encode()
        headers = {"content-type": ctype or "application/json"} if content is not None else {}
        r = c.request(method, url, content=content, headers=headers)
        assert r.status_code == status, (method, url, r.status_code, r.text)
        shown = {k: r.headers[k] for k in _COMPARED_HEADERS if k in r.headers}
        replies.append((r.status_code, shown, r.content.replace(coupon.encode(), b"{c}")))
    return replies


def test_the_same_contract_over_uvicorn_and_in_process(
    wire: httpx.Client, client: httpx.Client, unique: str
) -> None:
    # Names of one length, so the Content-Length of a reply that holds one compares.
    over_uvicorn = _smoke(wire, f"{unique}-wire")
    in_process = _smoke(client, f"{unique}-asgi")
    for row, a, b in zip(_SMOKE, over_uvicorn, in_process, strict=True):
        assert a == b, row[:2]


def test_the_table_tells_apart_a_path_that_drops_a_header(
    client: httpx.Client,
    api_app: CouponApp,
    in_process: Callable[[ASGIApp], httpx.Client],
    unique: str,
) -> None:
    """A planted difference: a path that loses the 405's Allow header, every status
    still right. The comparison above finds it."""

    async def no_allow(scope: Any, receive: Any, send: Any) -> None:
        async def strip(message: Any) -> None:
            if message["type"] == "http.response.start":
                kept = [(k, v) for k, v in message["headers"] if k != b"allow"]
                message = {**message, "headers": kept}
            await send(message)

        await api_app(scope, receive, strip)

    planted = _smoke(in_process(no_allow), f"{unique}-plant")
    good = _smoke(client, f"{unique}-right")
    differ = [row[:2] for row, a, b in zip(_SMOKE, planted, good, strict=True) if a != b]
    assert differ == [("DELETE", "/api/coupons"), ("PUT", "/api/coupons/claim")]
