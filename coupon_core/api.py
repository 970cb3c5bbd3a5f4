"""The HTTP API of the coupon service: a plain ASGI app over ``CouponService``.

The contract (statuses and bodies) is in DESIGN.md; ``coupon_core.openapi`` describes
it for clients. Every error becomes a response in one place, ``error_response``.

Multi-row routes (docs/multirow.md): ``POST /api/bundles/claim`` and
``GET /api/coupons?names=a,b``.

A raw ASGI callable routing five fixed paths, not a framework: under Starlette a claim
request ran under five ASGI layers (error and exception middleware, proxy headers, the
app, the router), with a ``Request`` and a ``Response`` object each time; routes a few
string comparisons decide. Bodies that never change (the 200 and 201 acknowledgements,
every fixed error) are encoded once at import. Side by side, one server process: 241-282
us of server CPU per claim request before, 149-238 after (benchmarks/README.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import queue
import threading
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote_to_bytes

from coupon_core.bundles import MAX_BUNDLE, validate_names
from coupon_core.errors import (
    AlreadyClaimed,
    CampaignClaimed,
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

__all__ = [
    "DEFAULT_MAX_THREADS",
    "MAX_BODY_BYTES",
    "CouponApp",
    "Reply",
    "create_app",
    "error_response",
]

log = logging.getLogger("coupon_core.api")

T = TypeVar("T")
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

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

_COUPON_PREFIX = "/api/coupons/"
_RAW_COUPON_PREFIX = _COUPON_PREFIX.encode()
_STATUS: dict[type[CouponError], int] = {
    InvalidRequest: 400,
    NoStock: 400,
    CouponNotFound: 404,
    CouponExists: 409,
    AlreadyClaimed: 409,
    CampaignClaimed: 409,
    Unavailable: 503,
}


def _json_bytes(content: object) -> bytes:
    # Compact and UTF-8, as Starlette's JSONResponse wrote it (clients compare bodies).
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Reply:
    """A complete response: status, extra headers and body, sent in two ASGI messages.

    The two messages are built once, with the reply: the server reads them and copies
    the headers, never changes them, so a fixed reply is sent as it was encoded.
    """

    status: int
    body: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    _messages: tuple[Message, Message] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        headers = [(b"content-length", b"%d" % len(self.body)), *self.headers]
        start = {"type": "http.response.start", "status": self.status, "headers": headers}
        body = {"type": "http.response.body", "body": self.body}
        object.__setattr__(self, "_messages", (start, body))

    @classmethod
    def json(cls, content: object, status: int = 200, **headers: str) -> Reply:
        extra = tuple((k.lower().encode(), v.encode("latin-1")) for k, v in headers.items())
        return cls(status, _json_bytes(content), ((b"content-type", b"application/json"), *extra))

    async def send(self, send: Send) -> None:
        start, body = self._messages
        await send(start)
        await send(body)


def _error(message: str, status: int, **headers: str) -> Reply:
    return Reply.json({"error": message}, status, **headers)


# Encoded once: the replies that never change.
_OK = Reply(200)
_CREATED = Reply(201)
_HEALTHY = Reply.json({"status": "healthy"})
_UNAVAILABLE = _error("service unavailable", 503)
_TOO_LARGE = _error("request body too large", 413)
_NOT_FOUND_PATH = _error("not found", 404)
_INTERNAL = _error("internal server error", 500)
# By kind and text: a kind raised with a text of its own still gets that text.
_FIXED: dict[tuple[type[CouponError], str], Reply] = {
    (kind, kind.message): _error(kind.message, status)
    for kind, status in _STATUS.items()
    if kind not in (InvalidRequest, Unavailable)
}
_POST_ONLY = _error("method not allowed", 405, allow="POST")
_GET_ONLY = _error("method not allowed", 405, allow="GET, HEAD")
_COUPONS_METHODS = _error("method not allowed", 405, allow="GET, HEAD, POST")
_GET = ("GET", "HEAD")


class PayloadTooLarge(Exception):
    """The request body is over ``MAX_BODY_BYTES``."""


class _Disconnected(Exception):
    """The client went away before its body was read: nobody is left to answer."""


def error_response(exc: BaseException) -> Reply:
    """The one mapping from an error to its HTTP response."""
    if isinstance(exc, Unavailable):
        # Generic on purpose: the reason may come from the driver's situation.
        return _UNAVAILABLE
    if isinstance(exc, CouponError) and type(exc) in _STATUS:
        text = str(exc)
        fixed = _FIXED.get((type(exc), text))
        return fixed if fixed is not None else _error(text, _STATUS[type(exc)])
    if isinstance(exc, PayloadTooLarge):
        return _TOO_LARGE
    log.error("unexpected error in a request", exc_info=exc)
    return _INTERNAL


def _header(headers: Iterable[tuple[bytes, bytes]], name: bytes) -> bytes | None:
    for key, value in headers:
        if key == name:
            return value
    return None


async def _read_body(scope: Scope, receive: Receive) -> bytes:
    """The body, refused (413) as soon as it passes the limit: never buffered unbounded."""
    declared = _header(scope["headers"], b"content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise InvalidRequest("bad Content-Length header") from None
        if length > MAX_BODY_BYTES:
            raise PayloadTooLarge()
    message = await receive()
    if message["type"] != "http.request":
        raise _Disconnected()
    body: bytes = message.get("body", b"")
    if not message.get("more_body", False):  # the whole body in one message: the usual case
        if len(body) > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        return body
    chunks = [body]
    size = len(body)
    while True:
        if size > MAX_BODY_BYTES:
            raise PayloadTooLarge()
        message = await receive()
        if message["type"] != "http.request":
            raise _Disconnected()
        chunk = message.get("body", b"")
        size += len(chunk)
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    if size > MAX_BODY_BYTES:
        raise PayloadTooLarge()
    return b"".join(chunks)


async def _json_object(scope: Scope, receive: Receive) -> dict[str, Any]:
    """The request body as a JSON object, or ``InvalidRequest`` saying why not."""
    ctype = _header(scope["headers"], b"content-type") or b""
    if ctype.split(b";", 1)[0].strip().lower() != b"application/json":
        raise InvalidRequest("content type must be application/json")
    body = await _read_body(scope, receive)
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        # ValueError covers malformed JSON and bad UTF-8; RecursionError very deep nesting.
        raise InvalidRequest("body is not valid JSON") from None
    if not isinstance(data, dict):
        raise InvalidRequest("body must be a JSON object")
    return data


def _coupon_name(scope: Scope) -> str:
    """The name in ``/api/coupons/{name}``, percent-decoded exactly from the raw path.

    Any text after the prefix, empty and newlines included (``GET /api/coupons/`` is a
    coupon that is not found).
    """
    raw = scope.get("raw_path")
    if isinstance(raw, bytes) and raw.startswith(_RAW_COUPON_PREFIX):
        try:
            return unquote_to_bytes(raw[len(_RAW_COUPON_PREFIX) :]).decode("utf-8")
        except UnicodeDecodeError:
            # Not UTF-8: no stored name can match it.
            raise CouponNotFound() from None
    path: str = scope["path"]
    return path[len(_COUPON_PREFIX) :]


def _names(scope: Scope) -> list[str]:
    """The coupon names of ``?names=a,b``: every ``names`` parameter, split on its raw
    commas *before* percent-decoding, so ``%2C`` is a comma inside a name.

    ``+`` decodes to a space (form encoding, what ``urlencode`` and browsers send), so
    a name's own ``+`` travels as ``%2B``. Other parameters are ignored.
    """
    query: bytes = scope.get("query_string", b"")
    values = [
        value
        for key, _, value in (part.partition(b"=") for part in query.split(b"&"))
        if unquote_to_bytes(key.replace(b"+", b" ")) == b"names"
    ]
    if not values:
        raise InvalidRequest("names is required")
    names: list[str] = []
    for value in values:
        for raw in value.split(b","):
            try:
                names.append(unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8"))
            except UnicodeDecodeError:
                raise InvalidRequest("names must be UTF-8 text") from None
            if len(names) > MAX_BUNDLE:
                raise InvalidRequest(f"names must hold at most {MAX_BUNDLE} names")
    return names


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.cancelled():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class _Threads:
    """Threads that run blocking calls for the event loop: a ``SimpleQueue`` in,
    ``call_soon_threadsafe`` out.

    What ``run_in_executor`` does, without the ``concurrent.futures.Future`` (its
    condition, callbacks and ``wrap_future`` chaining) between the two: ~10% of the
    GIL-holding samples of a claim request (py-spy --gil). A thread is started when a
    call finds none idle, up to ``max_threads``; beyond that calls queue.
    """

    def __init__(self, max_threads: int, name: str) -> None:
        self._max = max_threads
        self._name = name
        self._queue: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._closed = False

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        with self._lock:
            if self._closed:
                raise RuntimeError("the app's threads are closed")
            if self._idle > 0:
                self._idle -= 1  # claimed here, so two calls never count on one thread
            elif len(self._threads) < self._max:
                thread = threading.Thread(
                    target=self._work, name=f"{self._name}_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
                thread.start()
        self._queue.put((loop, future, fn, args))
        return await future

    def _work(self) -> None:
        get, put_back = self._queue.get, self._queue.put
        while True:
            item = get()
            if item is None:
                put_back(None)  # the next thread stops too
                return
            loop, future, fn, args = item
            try:
                result, error = fn(*args), None
            except BaseException as exc:
                result, error = None, exc
            del item, fn, args
            with self._lock:
                self._idle += 1
            # RuntimeError: the loop has closed, nobody waits for the answer.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future, result, error)
            del loop, future, result, error

    def close(self) -> None:
        """Threads end once the calls queued before finish (not waited for here)."""
        with self._lock:
            self._closed = True
        self._queue.put(None)


class CouponApp:
    """The ASGI app serving a ``CouponService`` with the contract of DESIGN.md.

    Routes: ``POST /api/coupons``, ``POST /api/coupons/claim``, ``GET /api/coupons/{name}``
    (any text, ``claim`` included), ``GET /health``, ``GET /openapi.json``; another
    method on a known path is a 405 with ``Allow``, an unknown path a JSON 404 (no
    redirect to a slashed twin). Blocking service calls run on the app's own threads.
    """

    def __init__(self, service: CouponService, *, max_threads: int = DEFAULT_MAX_THREADS):
        self.service = service
        self._threads = _Threads(max_threads, "coupon-api")
        self._openapi = Reply.json(openapi_document())

    def close(self) -> None:
        """Let the threads go (those still running a call finish it on their own)."""
        self._threads.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            try:
                reply = await self._route(scope, receive)
            except _Disconnected:
                return
            except Exception as exc:
                reply = error_response(exc)
            await reply.send(send)
        elif kind == "lifespan":
            await self._lifespan(receive, send)
        elif kind == "websocket":
            await send({"type": "websocket.close", "code": 1000})

    async def _route(self, scope: Scope, receive: Receive) -> Reply:
        path: str = scope["path"]
        method: str = scope["method"]
        if path == "/api/coupons/claim" and method == "POST":
            return await self._claim(scope, receive)
        if path == "/api/bundles/claim":
            return await self._claim_bundle(scope, receive) if method == "POST" else _POST_ONLY
        if path.startswith(_COUPON_PREFIX):
            if method in _GET:  # GET /api/coupons/claim reads the coupon named "claim"
                return await self._get(scope)
            return _POST_ONLY if path == "/api/coupons/claim" else _GET_ONLY
        if path == "/api/coupons":
            if method == "POST":
                return await self._create(scope, receive)
            return await self._get_many(scope) if method in _GET else _COUPONS_METHODS
        if path == "/health":
            return await self._health() if method in _GET else _GET_ONLY
        if path == "/openapi.json":
            return self._openapi if method in _GET else _GET_ONLY
        return _NOT_FOUND_PATH

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await self._threads.run(fn, *args)

    async def _create(self, scope: Scope, receive: Receive) -> Reply:
        data = await _json_object(scope, receive)
        name = validate_text("name", data.get("name"))
        amount = validate_amount(data.get("amount"))
        campaign = data.get("campaign")
        if campaign is None:  # absent or null: in no campaign
            await self._call(self.service.create, name, amount)
        else:
            campaign = validate_text("campaign", campaign)
            await self._call(self.service.create, name, amount, campaign)
        return _CREATED

    async def _claim_bundle(self, scope: Scope, receive: Receive) -> Reply:
        data = await _json_object(scope, receive)
        user_id = validate_text("user_id", data.get("user_id"))
        names = validate_names("coupon_names", data.get("coupon_names"))
        await self._call(self.service.claim_bundle, user_id, names)
        return _OK

    async def _get_many(self, scope: Scope) -> Reply:
        views = await self._call(self.service.get_many, _names(scope))
        return Reply.json({"coupons": [view.to_dict() for view in views]})

    async def _claim(self, scope: Scope, receive: Receive) -> Reply:
        data = await _json_object(scope, receive)
        user_id = validate_text("user_id", data.get("user_id"))
        coupon_name = validate_text("coupon_name", data.get("coupon_name"))
        await self._call(self.service.claim, user_id, coupon_name)
        return _OK

    async def _get(self, scope: Scope) -> Reply:
        view = await self._call(self.service.get, _coupon_name(scope))
        return Reply.json(view.to_dict())

    async def _health(self) -> Reply:
        ok, reason = await self._call(self.service.health)
        if ok:
            return _HEALTHY
        return Reply.json({"status": "unhealthy", "reason": reason}, 503)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


def create_app(service: CouponService, *, max_threads: int = DEFAULT_MAX_THREADS) -> CouponApp:
    """The ASGI app serving ``service`` with the contract of DESIGN.md."""
    return CouponApp(service, max_threads=max_threads)
