"""Clients: the same operations end with the same result kinds on both layers."""

from __future__ import annotations

import threading
import time

import psycopg
import pytest

from coupon_core.database import free_port
from experiments.checks import claims_match_history, read_state
from experiments.clients import HttpClient, result_of_http
from experiments.history import History, Op
from experiments.lab import open_lab


def _op(i: int, kind: str, coupon: str, user: str | None = None, amount: int | None = None) -> Op:
    return Op(op_id=i, worker=0, kind=kind, coupon=coupon, user=user, amount=amount)  # type: ignore[arg-type]


@pytest.mark.parametrize("layer", ["service", "http"])
def test_every_result_kind_is_the_same_on_both_layers(db_url: str, unique: str, layer: str) -> None:
    a = f"{unique}-a"
    script = [
        (_op(1, "create", a, amount=1), "ok", 201),
        (_op(2, "create", a, amount=5), "coupon_exists", 409),
        (_op(3, "create", f"{unique}-bad", amount=0), "invalid", 400),
        (_op(4, "claim", f"{unique}-none", user="u1"), "not_found", 404),
        (_op(5, "claim", a, user="u1"), "ok", 200),
        (_op(6, "claim", a, user="u1"), "already_claimed", 409),
        (_op(7, "claim", a, user="u2"), "no_stock", 400),
        (_op(8, "claim", a, user=" "), "invalid", 400),
        (_op(9, "get", a), "ok", 200),
        (_op(10, "get", f"{unique}-none"), "not_found", 404),
    ]
    history = History()
    with open_lab(database_url=db_url, layer=layer, workers=1, prefix=unique) as lab:
        for op, _, _ in script:
            lab.client.invoke(op, history)
    assert len(history) == len(script)
    for op, want, status in script:
        assert op.result == want, (op, want)
        assert op.http_status == (status if layer == "http" else None)
        assert op.complete_ns >= op.invoke_ns > 0
        if want == "ok":
            assert op.message is None
        else:
            assert op.message
    get = script[8][0]
    assert get.value == {"amount": 1, "remaining_amount": 0, "claimed_by": ["u1"]}
    assert script[1][0].message == "coupon already exists"
    assert script[6][0].message == "coupon out of stock"


@pytest.mark.parametrize("layer", ["service", "http"])
def test_names_with_awkward_characters_read_back(db_url: str, unique: str, layer: str) -> None:
    name = f"{unique}/ä 'q\"%20?#{{x}}"
    with open_lab(database_url=db_url, layer=layer, workers=1, prefix=unique) as lab:
        created = lab.client.invoke(_op(1, "create", name, amount=3))
        got = lab.client.invoke(_op(2, "get", name))
    assert created.result == "ok"
    assert got.result == "ok"
    assert got.value == {"amount": 3, "remaining_amount": 3, "claimed_by": []}


def test_connection_refused_is_unknown() -> None:
    client = HttpClient(f"http://127.0.0.1:{free_port()}", timeout_s=2.0)
    try:
        op = client.invoke(_op(1, "claim", "x", user="u"))
    finally:
        client.close()
    assert op.result == "unknown"
    assert op.http_status is None
    assert "ConnectionRefusedError" in (op.message or "")


def test_http_timeout_is_unknown_and_the_claim_may_land(db_url: str, unique: str) -> None:
    coupon = f"{unique}-slow"
    history = History()
    with open_lab(database_url=db_url, layer="http", workers=1, prefix=unique) as lab:
        assert lab.client.invoke(_op(1, "create", coupon, amount=5)).result == "ok"
        short = HttpClient(lab.server.url, timeout_s=0.5)
        try:
            with psycopg.connect(db_url) as locker:
                locker.execute("SELECT 1 FROM coupons WHERE name = %s FOR UPDATE", (coupon,))
                op = short.invoke(_op(2, "claim", coupon, user="u1"), history)
                locker.rollback()
        finally:
            short.close()
        # The server carries on once the lock is gone: the "unknown" claim lands.
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not read_state(lab.conn, unique).claims:
            time.sleep(0.05)
        state = read_state(lab.conn, unique)
    assert op.result == "unknown"
    assert "Timeout" in (op.message or "")
    assert 0.4e9 <= op.latency_ns < 3e9
    assert state.claim_rows(coupon) == 1
    # One indeterminate claim, one row: allowed, and the check knows why.
    verdict = claims_match_history(history, state)
    assert verdict.passed is True
    assert verdict.figures["indeterminate_claims"] == 1


def test_lab_leaves_nothing_running(db_url: str, unique: str) -> None:
    before = {t.ident for t in threading.enumerate()}
    with open_lab(database_url=db_url, layer="http", workers=4, prefix=unique) as lab:
        lab.client.invoke(_op(1, "get", f"{unique}-x"))
        server = lab.server
        assert len({t.ident for t in threading.enumerate()} - before) > 0
    deadline = time.monotonic() + 5
    while {t.ident for t in threading.enumerate()} - before and time.monotonic() < deadline:
        time.sleep(0.05)
    left = [t.name for t in threading.enumerate() if t.ident not in before]
    assert left == []
    assert lab.conn.closed
    assert not server.running


@pytest.mark.parametrize(
    ("kind", "status", "error", "want"),
    [
        ("create", 201, None, "ok"),
        ("claim", 200, None, "ok"),
        ("create", 409, "coupon already exists", "coupon_exists"),
        ("claim", 409, "coupon already claimed by user", "already_claimed"),
        ("claim", 409, None, "already_claimed"),
        ("claim", 404, "coupon not found", "not_found"),
        ("claim", 400, "coupon out of stock", "no_stock"),
        ("claim", 400, "invalid request: user_id is required", "invalid"),
        ("create", 413, None, "invalid"),
        ("get", 503, "service unavailable", "unavailable"),
        ("get", 500, "internal server error", "server_error"),
        ("get", 502, None, "server_error"),
    ],
)
def test_result_of_http(kind: str, status: int, error: str | None, want: str) -> None:
    assert result_of_http(kind, status, error) == want  # type: ignore[arg-type]


def test_http_client_warms_one_connection_per_worker_and_reuses_it(
    db_url: str, unique: str
) -> None:
    coupon = f"{unique}-w"
    with open_lab(database_url=db_url, layer="http", workers=2, prefix=unique) as lab:
        client = lab.client
        assert isinstance(client, HttpClient)
        assert client.invoke(_op(1, "create", coupon, amount=5)).result == "ok"
        client.release()
        ops = [_op(i, "claim", coupon, user=f"u{i}") for i in range(2, 6)]

        def worker(mine: list[Op]) -> None:
            client.ready(mine)  # connect, warm, encode: before any op runs
            for op in mine:
                client.invoke(op)
            client.release()

        threads = [threading.Thread(target=worker, args=(ops[i::2],)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        # Two workers at once: at most two connections, given back for the next run.
        assert 1 <= len(client._open) <= 2
        assert len(client._idle) == len(client._open)
        got = client.invoke(_op(9, "get", coupon))
    assert [o.result for o in ops] == ["ok"] * 4
    assert got.value is not None
    assert got.value["remaining_amount"] == 1
    assert sorted(got.value["claimed_by"]) == sorted(o.user or "" for o in ops)


def test_http_client_reconnects_when_the_server_closed_its_connection(
    db_url: str, unique: str
) -> None:
    with open_lab(database_url=db_url, layer="http", workers=1, prefix=unique) as lab:
        client = lab.client
        assert isinstance(client, HttpClient)
        first = client.invoke(_op(1, "get", f"{unique}-none"))
        (conn,) = client._open
        conn.sock.shutdown(2)  # as if the server had closed the idle keep-alive connection
        second = client.invoke(_op(2, "get", f"{unique}-none"))
    assert (first.result, second.result) == ("not_found", "not_found")
