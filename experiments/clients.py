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

import time
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from coupon_core import CouponError, CouponService
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
    """Real HTTP over loopback with httpx: one shared, thread-safe connection pool.

    The pool is sized for the run (``max_connections`` = the number of workers), so a
    500-worker stampede opens its connections once and reuses them, instead of
    queueing inside httpx (which would hide the server's behaviour behind ours).
    """

    layer = "http"

    def __init__(
        self, base_url: str, *, timeout_s: float = 10.0, max_connections: int = 100
    ) -> None:
        self.base_url = base_url.rstrip("/")
        limits = httpx.Limits(
            max_connections=max_connections,
            max_keepalive_connections=max_connections,
            keepalive_expiry=30.0,
        )
        self.http = httpx.Client(
            base_url=self.base_url,
            timeout=httpx.Timeout(timeout_s, pool=timeout_s),
            limits=limits,
            trust_env=False,  # loopback only: never through a proxy from the environment
        )

    def _request(self, op: Op) -> httpx.Response:
        if op.kind == "create":
            return self.http.post("/api/coupons", json={"name": op.coupon, "amount": op.amount})
        if op.kind == "claim":
            return self.http.post(
                "/api/coupons/claim", json={"user_id": op.user, "coupon_name": op.coupon}
            )
        return self.http.get(f"/api/coupons/{quote(op.coupon, safe='')}")

    def invoke(self, op: Op, history: History | None = None) -> Op:
        op.invoke_ns = _now()
        try:
            response = self._request(op)
            body = _json_or_none(response)
            op.http_status = response.status_code
            error = body.get("error") if isinstance(body, dict) else None
            op.result = result_of_http(op.kind, response.status_code, _str_or_none(error))
            if op.result == "ok":
                if op.kind == "get" and isinstance(body, dict):
                    op.value = {
                        "amount": body.get("amount"),
                        "remaining_amount": body.get("remaining_amount"),
                        "claimed_by": body.get("claimed_by"),
                    }
            else:
                op.message = _str_or_none(error) or response.text[:500] or None
        except httpx.TransportError as err:  # timeouts, refused or reset connections
            op.result = "unknown"
            op.message = f"{type(err).__name__}: {err}"[:500]
        except Exception as err:  # a client-side bug: the op's effect is unknown
            op.result = "unknown"
            op.message = f"{type(err).__name__}: {err}"[:500]
        op.complete_ns = _now()
        if history is not None:
            history.append(op)
        return op

    def close(self) -> None:
        self.http.close()


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content:
        return None
    try:
        return response.json()
    except ValueError:
        return None


def _str_or_none(value: object) -> str | None:
    return value if isinstance(value, str) else None
