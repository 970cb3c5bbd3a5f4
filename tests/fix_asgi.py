"""An in-process transport as a fixture: a sync httpx client that calls an ASGI app directly.

``in_process(app)`` is an ``httpx.Client`` whose requests go to ``app`` through
``httpx.ASGITransport``, with no socket and no server: for a test of the HTTP contract
(status, body, headers) where no socket behaviour is under test. Loaded for every test
by ``pytest_plugins`` in the top-level ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest

__all__ = ["REQUEST_BOUND_S", "ASGIApp", "InProcessTransport", "in_process"]

#: An ASGI app: a CouponApp, or a test's wrapper around one.
ASGIApp = Callable[[Any, Any, Any], Awaitable[None]]

# Every request of these tests answers in well under a second; a call that hangs
# fails after this instead of at the suite's timeout.
REQUEST_BOUND_S = 30.0


class _Chunks(httpx.AsyncByteStream):
    """A request body read from the caller's thread, replayed chunk by chunk to the app."""

    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


class InProcessTransport(httpx.BaseTransport):
    """``httpx.ASGITransport`` for a sync ``httpx.Client``: the app runs on an event
    loop in a thread of its own (ASGITransport alone serves only ``AsyncClient``).

    A streamed request body reaches the app in the chunks the caller gave, with no
    Content-Length, as a chunked upload would. Each request is bounded by
    ``bound_s``; ``close()`` stops the loop and joins its thread.
    """

    def __init__(self, app: ASGIApp, bound_s: float = REQUEST_BOUND_S) -> None:
        self._asgi = httpx.ASGITransport(app=app)
        self._bound_s = bound_s
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="asgi-in-process", daemon=True
        )
        self._thread.start()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        assert isinstance(request.stream, httpx.SyncByteStream)
        request.stream = _Chunks([bytes(chunk) for chunk in request.stream])
        future = asyncio.run_coroutine_threadsafe(self._exchange(request), self._loop)
        try:
            return future.result(self._bound_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise httpx.ReadTimeout(
                f"the app did not answer within {self._bound_s:.0f}s", request=request
            ) from None

    async def _exchange(self, request: httpx.Request) -> httpx.Response:
        response = await self._asgi.handle_async_request(request)
        body = await response.aread()
        return httpx.Response(
            response.status_code, headers=response.headers.raw, stream=httpx.ByteStream(body)
        )

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        assert not self._thread.is_alive(), "the in-process event loop did not stop"
        self._loop.close()


@pytest.fixture
def in_process() -> Iterator[Callable[[ASGIApp], httpx.Client]]:
    """Makes clients that call an app in-process; each is closed after the test."""
    clients: list[httpx.Client] = []

    def make(app: ASGIApp) -> httpx.Client:
        c = httpx.Client(
            transport=InProcessTransport(app), base_url="http://in-process", timeout=30
        )
        clients.append(c)
        return c

    try:
        yield make
    finally:
        for c in clients:
            c.close()
