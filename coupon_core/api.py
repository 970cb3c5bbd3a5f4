"""The HTTP API of the coupon service: a Starlette app over ``CouponService``.

The contract (statuses and bodies) is in DESIGN.md; ``coupon_core.openapi`` describes
it for clients. Every error becomes a response in one place, ``error_response``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from starlette.applications import Starlette
from starlette.convertors import Convertor, register_url_convertor
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from coupon_core.errors import (
    AlreadyClaimed,
    CouponError,
    CouponExists,
    CouponNotFound,
    InvalidRequest,
    NoStock,
    Unavailable,
)
from coupon_core.openapi import openapi_document
from coupon_core.service import CouponService
from coupon_core.validation import validate_amount, validate_text

__all__ = ["DEFAULT_MAX_THREADS", "MAX_BODY_BYTES", "create_app", "error_response"]

log = logging.getLogger("coupon_core.api")

T = TypeVar("T")

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB; more is a 413

# Service calls block (a psycopg pool), so each request holds a worker thread while it
# waits for a connection. A small thread limit (anyio's default is 40) would queue a
# 500-client stampede in front of the pool, unbounded by the pool timeout: during an
# outage the last request would wait ~(clients / 40) pool timeouts instead of one. With
# a thread per concurrent request the pool's own FIFO queue and timeout bound every
# wait, and the pool (not the thread count) stays the one throttle on the database.
# The threads are a plain ThreadPoolExecutor's, not anyio's: anyio's hop (capacity
# limiter, cancel scopes, run-vars) cost ~15% of a claim request's server CPU
# (py-spy); with the executor 380 -> 320 us a claim, 2390 -> 2730 claims/s (one process).
DEFAULT_MAX_THREADS = 600

_COUPON_PREFIX = b"/api/coupons/"
_STATUS: dict[type[CouponError], int] = {
    InvalidRequest: 400,
    NoStock: 400,
    CouponNotFound: 404,
    CouponExists: 409,
    AlreadyClaimed: 409,
    Unavailable: 503,
}


class PayloadTooLarge(Exception):
    """The request body is over ``MAX_BODY_BYTES``."""


def error_response(exc: BaseException) -> Response:
    """The one mapping from an error to its HTTP response."""
    if isinstance(exc, Unavailable):
        # Generic on purpose: the reason may come from the driver's situation.
        return JSONResponse({"error": "service unavailable"}, status_code=503)
    if isinstance(exc, CouponError) and type(exc) in _STATUS:
        return JSONResponse({"error": str(exc)}, status_code=_STATUS[type(exc)])
    if isinstance(exc, PayloadTooLarge):
        return JSONResponse({"error": "request body too large"}, status_code=413)
    if isinstance(exc, HTTPException) and exc.status_code < 500:
        return JSONResponse(
            {"error": str(exc.detail).lower()},
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
        )
    log.error("unexpected error in a request", exc_info=exc)
    return JSONResponse({"error": "internal server error"}, status_code=500)


Endpoint = Callable[[Request], Awaitable[Response]]


def _mapped(endpoint: Endpoint) -> Endpoint:
    """Answer any error an endpoint raises through ``error_response``."""

    async def wrapper(request: Request) -> Response:
        try:
            return await endpoint(request)
        except Exception as exc:
            return error_response(exc)

    wrapper.__name__ = endpoint.__name__
    return wrapper


async def _read_body(request: Request) -> bytes:
    """The body, refused (413) as soon as it passes the limit: never buffered unbounded."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidRequest("bad Content-Length header") from None
        if length > MAX_BODY_BYTES:
            raise PayloadTooLarge()
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        chunks.append(chunk)
    return b"".join(chunks)


async def _json_object(request: Request) -> dict[str, Any]:
    """The request body as a JSON object, or ``InvalidRequest`` saying why not."""
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise InvalidRequest("content type must be application/json")
    body = await _read_body(request)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers malformed JSON and bad UTF-8; RecursionError very deep nesting.
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    return data


class _AnyTextConvertor(Convertor[str]):
    """Any text, newlines included (empty too: `GET /api/coupons/` is a coupon that is not found).

    Starlette's ``path`` convertor is ``.*``, and ``.`` stops at a newline: a name
    holding ``\n`` (accepted by create) would not route to its own GET.
    """

    regex = "[\\s\\S]*"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("anytext", _AnyTextConvertor())


def _coupon_name(request: Request) -> str:
    """The name in ``/api/coupons/{name}``, percent-decoded exactly from the raw path."""
    raw = request.scope.get("raw_path")
    if isinstance(raw, bytes) and raw.startswith(_COUPON_PREFIX):
        try:
            return unquote_to_bytes(raw[len(_COUPON_PREFIX) :]).decode("utf-8")
        except UnicodeDecodeError:
            # Not UTF-8: no stored name can match it.
            raise CouponNotFound() from None
    return str(request.path_params["name"])


def create_app(service: CouponService, *, max_threads: int = DEFAULT_MAX_THREADS) -> Starlette:
    """The ASGI app serving ``service`` with the contract of DESIGN.md."""
    executor = concurrent.futures.ThreadPoolExecutor(max_threads, thread_name_prefix="coupon-api")

    async def run_in_threadpool(fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(executor, fn, *args)

    @_mapped
    async def create_coupon(request: Request) -> Response:
        data = await _json_object(request)
        name = validate_text("name", data.get("name"))
        amount = validate_amount(data.get("amount"))
        await run_in_threadpool(service.create, name, amount)
        return Response(status_code=201)

    @_mapped
    async def claim_coupon(request: Request) -> Response:
        data = await _json_object(request)
        user_id = validate_text("user_id", data.get("user_id"))
        coupon_name = validate_text("coupon_name", data.get("coupon_name"))
        await run_in_threadpool(service.claim, user_id, coupon_name)
        return Response(status_code=200)

    @_mapped
    async def get_coupon(request: Request) -> Response:
        view = await run_in_threadpool(service.get, _coupon_name(request))
        return JSONResponse(view.to_dict())

    @_mapped
    async def health(request: Request) -> Response:
        ok, reason = await run_in_threadpool(service.health)
        if ok:
            return JSONResponse({"status": "healthy"})
        return JSONResponse({"status": "unhealthy", "reason": reason}, status_code=503)

    document = openapi_document()

    async def openapi(request: Request) -> Response:
        return JSONResponse(document)

    async def http_error(request: Request, exc: Exception) -> Response:
        return error_response(exc)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        try:
            yield
        finally:
            executor.shutdown(wait=False)

    routes = [
        Route("/api/coupons", create_coupon, methods=["POST"]),
        Route("/api/coupons/claim", claim_coupon, methods=["POST"]),
        Route("/api/coupons/{name:anytext}", get_coupon, methods=["GET"]),
        Route("/health", health, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: http_error, Exception: http_error},
        lifespan=lifespan,
    )
    # An unknown path is a JSON 404, not a redirect to the same path with a slash.
    app.router.redirect_slashes = False
    return app
