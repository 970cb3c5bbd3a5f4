"""Clients: the same three operations (create, claim, get) through two doors.

``ServiceClient`` calls a ``CouponService`` in-process; ``HttpClient`` speaks the
HTTP contract to the API served on a loopback port. Both fill an ``Op`` the same
way: monotonic invoke and complete times, a result kind from
``experiments.history.RESULT_KINDS`` (identical on both layers), the message a
refusal carried, the HTTP status where there is one, and what a get read.

A client never raises for an operation's outcome: every ending, a crash of the
client included, becomes a result kind, so a history is always complete.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Sequence
from typing import Any, Protocol
from urllib.parse import quote, urlsplit

from coupon_core import CouponError, CouponService
from experiments.contract import judge
from experiments.history import RESULT_KINDS, History, Op, OpKind, ResultKind

__all__ = ["Client", "HttpClient", "ServiceClient", "result_of_http", "result_of_service_error"]


class Client(Protocol):
    """Performs one operation, fills in how it ended, and records it."""

    layer: str

    def invoke(self, op: Op, history: History | None = None) -> Op:
        """Run ``op`` (kind, coupon, user, amount), fill in the outcome, append it to ``history``."""
        ...

    def close(self) -> None: ...


def result_of_service_error(err: CouponError) -> ResultKind:
    """The result kind of a service error (``InternalError`` is the service's 5xx)."""
    kind = err.kind
    if kind in RESULT_KINDS and kind != "ok":
        return kind
    return "server_error"


def result_of_http(kind: OpKind, status: int, error: str | None) -> ResultKind:
    """Map an HTTP answer (status and the body's ``error``) to a result kind."""
    text = (error or "").lower()
    if 200 <= status < 300:
        return "ok"
    if status == 404:
        return "not_found"
    if status == 409:
        if "already claimed" in text:
            return "already_claimed"
        if "already exists" in text:
            return "coupon_exists"
        # A 409 with another body is still the conflict the op kind can have.
        return "coupon_exists" if kind == "create" else "already_claimed"
    if status == 400 and "out of stock" in text:
        return "no_stock"
    if status == 503:
        return "unavailable"
    if status >= 500:
        return "server_error"
    # 400 invalid, 413 too large, 415/422 and any other 4xx: the request was refused.
    return "invalid"


def _now() -> int:
    return time.monotonic_ns()


class ServiceClient:
    """In-process calls on a ``CouponService``.

    The call cannot be interrupted from outside, so the per-operation bound is the
    service's own: the lab configures its pool timeout and statement timeout from
    the operation timeout, and a call that ends as ``Unavailable`` is recorded so.
    """

    layer = "service"

    def __init__(self, service: CouponService) -> None:
        self.service = service

    def invoke(self, op: Op, history: History | None = None) -> Op:
        op.invoke_ns = _now()
        try:
            if op.kind == "create":
                self.service.create(op.coupon, op.amount if op.amount is not None else 0)
            elif op.kind == "claim":
                self.service.claim(op.user or "", op.coupon)
            else:
                view = self.service.get(op.coupon)
                op.value = {
                    "amount": view.amount,
                    "remaining_amount": view.remaining_amount,
                    "claimed_by": list(view.claimed_by),
                }
            op.result = "ok"
        except CouponError as err:
            op.result = result_of_service_error(err)
            op.message = str(err)
        except Exception as err:  # a bug in the service: record it, never lose the op
            op.result = "server_error"
            op.message = f"{type(err).__name__}: {err}"
        op.complete_ns = _now()
        if history is not None:
            history.append(op)
        return op

    def close(self) -> None:
        """The service belongs to the lab, which closes it."""


class HttpClient:
    """Real HTTP/1.1 over loopback, one kept-alive connection per worker thread.

    Every answer is judged against the contract (``experiments.contract.judge``):
    one that differs ends ``contract_violation`` with its status and body kept.

    Built for stampedes that collide: ``ready(ops)``, called on a worker's thread
    before the barrier, opens that thread's connection, warms it with one request
    the server answers without the database, and encodes the worker's requests, so
    after the release a worker's first call is one ``sendall`` of prepared bytes.
    (The pooled httpx client this replaces spent its time after the release in the
    pool's lock and request building: 22-78 ms start spread for 100 workers.)
    ``release()`` gives the thread's connection back for the next worker to reuse,
    so runs of 100, 200 and 500 workers one after another keep at most 500 open.
    """

    layer = "http"

    def __init__(
        self, base_url: str, *, timeout_s: float = 10.0, max_connections: int | None = None
    ) -> None:
        # max_connections: accepted from callers written for the pooled client it replaced;
        # connections here are one per thread (or greenlet), so the callers bound them.
        del max_connections
        self.base_url = base_url.rstrip("/")
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._https = url.scheme == "https"
        self._host = url.hostname
        self._port = url.port or (443 if self._https else 80)
        self._path = url.path.rstrip("/")
        default_port = 443 if self._https else 80
        host = f"[{self._host}]" if ":" in self._host else self._host
        self._host_header = host if self._port == default_port else f"{host}:{self._port}"
        self.timeout_s = timeout_s
        self._local = threading.local()
        self._lock = threading.Lock()
        self._idle: list[_Connection] = []
        self._open: set[_Connection] = set()
        self._closed = False

    # -- connections ----------------------------------------------------------------

    def _connect(self) -> _Connection:
        sock = socket.create_connection((self._host, self._port), timeout=self.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self._https:
            context = ssl.create_default_context()
            sock = context.wrap_socket(sock, server_hostname=self._host)
        conn = _Connection(sock)
        with self._lock:
            self._open.add(conn)
        return conn

    def _connection(self) -> _Connection:
        conn: _Connection | None = getattr(self._local, "conn", None)
        if conn is not None and conn.usable():
            return conn
        if conn is not None:
            self._drop(conn)
        conn = None
        with self._lock:
            while self._idle and conn is None:
                candidate = self._idle.pop()
                conn = candidate if candidate.usable() else None
                if conn is None:
                    self._open.discard(candidate)
                    candidate.close()
        conn = conn or self._connect()
        self._local.conn = conn
        return conn

    def _drop(self, conn: _Connection) -> None:
        if getattr(self._local, "conn", None) is conn:
            self._local.conn = None
        with self._lock:
            self._open.discard(conn)
        conn.close()

    def ready(self, ops: Sequence[Op] = ()) -> None:
        """On a worker's thread, before the barrier: connect, warm, prepare ``ops``' bytes.

        A failure here is not an op's outcome: the op itself will reconnect and
        record how it ended.
        """
        prepared: dict[tuple[object, ...], bytes] = getattr(self._local, "prepared", None) or {}
        for op in ops:
            prepared[_key(op)] = self._encode(op)
        self._local.prepared = prepared
        with contextlib.suppress(OSError, http.client.HTTPException):
            conn = self._connection()
            # GET on a POST-only route: answered by the router, no database, no effect.
            conn.exchange(self._warm_request(), self.timeout_s)

    def release(self) -> None:
        """The calling thread is done: its connection goes back for another to reuse."""
        conn: _Connection | None = getattr(self._local, "conn", None)
        self._local.conn = None
        self._local.prepared = None
        if conn is None:
            return
        with self._lock:
            if conn.usable() and not self._closed:
                self._idle.append(conn)
                return
            self._open.discard(conn)
        conn.close()

    # -- requests -------------------------------------------------------------------

    def _head(self, method: str, path: str, body: bytes | None) -> bytes:
        lines = [f"{method} {self._path}{path} HTTP/1.1", f"Host: {self._host_header}"]
        if body is not None:
            lines += ["Content-Type: application/json", f"Content-Length: {len(body)}"]
        lines += ["Accept: application/json", "", ""]
        return "\r\n".join(lines).encode("latin-1")

    def _warm_request(self) -> bytes:
        return self._head("GET", "/api/coupons", None)

    def _encode(self, op: Op) -> bytes:
        if op.kind == "get":
            return self._head("GET", f"/api/coupons/{quote(op.coupon, safe='')}", None)
        if op.kind == "create":
            payload: dict[str, Any] = {"name": op.coupon, "amount": op.amount}
            path = "/api/coupons"
        else:
            payload = {"user_id": op.user, "coupon_name": op.coupon}
            path = "/api/coupons/claim"
        body = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        return self._head("POST", path, body) + body

    def _request_bytes(self, op: Op) -> bytes:
        prepared: dict[tuple[object, ...], bytes] | None = getattr(self._local, "prepared", None)
        if prepared is not None:
            data = prepared.pop(_key(op), None)
            if data is not None:
                return data
        return self._encode(op)

    def invoke(self, op: Op, history: History | None = None) -> Op:
        conn: _Connection | None = None
        try:
            request = self._request_bytes(op)
            conn = self._connection()
            op.invoke_ns = _now()
            status, content_type, body, keep = conn.exchange(request, self.timeout_s)
            op.http_status = status
            verdict = judge(op.kind, op.coupon, status, content_type, body)
            op.result = verdict.result
            if verdict.violation is not None:
                op.message = f"contract: {verdict.violation}"[:500]
                op.body = body[:500].decode("utf-8", "replace")
            elif op.result != "ok":
                op.message = verdict.error or body[:500].decode("utf-8", "replace") or None
            elif op.kind == "get":
                op.value = verdict.value
            if not keep:
                self._drop(conn)
        except (OSError, http.client.HTTPException) as err:
            # Timeouts, refused or reset connections, a garbled answer: the op's effect
            # is unknown, and the connection is not trusted again.
            op.invoke_ns = op.invoke_ns or _now()
            op.result = "unknown"
            op.message = f"{type(err).__name__}: {err}"[:500]
            if conn is not None:
                self._drop(conn)
        except Exception as err:  # a client-side bug: the op's effect is unknown
            op.invoke_ns = op.invoke_ns or _now()
            op.result = "unknown"
            op.message = f"{type(err).__name__}: {err}"[:500]
            if conn is not None:
                self._drop(conn)
        op.complete_ns = _now()
        if history is not None:
            history.append(op)
        return op

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns = list(self._open)
            self._open.clear()
            self._idle.clear()
        for conn in conns:
            conn.close()


def _key(op: Op) -> tuple[object, ...]:
    return (op.op_id, op.kind, op.coupon, op.user, op.amount)


class _Connection:
    """One HTTP/1.1 connection: send prepared bytes, read one answer."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.closed = False

    def usable(self) -> bool:
        """Open, and nothing to read: a kept-alive connection the server has not closed."""
        if self.closed:
            return False
        try:
            readable, _, _ = select.select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def exchange(self, request: bytes, timeout_s: float) -> tuple[int, str | None, bytes, bool]:
        """Send ``request``; return the answer's status, Content-Type, body, and keep-alive."""
        self.sock.settimeout(timeout_s)
        self.sock.sendall(request)
        response = http.client.HTTPResponse(self.sock)
        try:
            response.begin()
            body = response.read()
            content_type = response.getheader("content-type")
            return response.status, content_type, body, not response.will_close
        finally:
            response.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                self.sock.close()
