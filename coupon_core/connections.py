"""The server's HTTP/1.1 connections: request deadlines, a connection bound, a graceful drain.

uvicorn's httptools protocol, with three rules of DESIGN.md ("Server deadlines") added:

- A request's head and body must arrive within ``request_timeout_s`` of its first byte
  (of the connection's opening, for the first request). Past it: a 408 with the
  contract's error body and ``Connection: close`` when any of the request came, a plain
  close when none did; the connection is freed either way. uvicorn has no such bound:
  a client that sent ``Content-Length: 100`` and 8 bytes held its connection forever.
  Once the body is complete the deadline is off: the service call is bounded by the
  pool timeout.
- At most ``max_connections`` open connections: one beyond gets a 503 (contract body,
  ``Connection: close``) as soon as its request head is in, and never reaches the app.
  Its head is awaited, not refused at ``accept``: an answer written before the request
  is read races the client's send, and a close with unread data is a reset the client
  may see before the answer. It is under the same deadline as every connection.
- Shutdown drains instead of cutting: an idle kept-alive connection is not closed at
  once (uvicorn's ``shutdown`` does, and a client that sent a request on it a moment
  before loses it, an ``unknown`` op); it stays open, and its next request is served
  with ``Connection: close``, until it has been idle ``DRAIN_IDLE_S``. In-flight
  requests finish and answer with ``Connection: close``, as in uvicorn.
"""

from __future__ import annotations

import asyncio
import json
import time
from asyncio import TimerHandle
from typing import Any, ClassVar

from uvicorn.config import Config
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState

__all__ = [
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_REQUEST_TIMEOUT_S",
    "DRAIN_IDLE_S",
    "protocol_class",
]

DEFAULT_REQUEST_TIMEOUT_S = 10.0
#: Per server process. The app starts a thread per concurrent service call (up to 600);
#: a 500-client stampede must fit, and the bound must stay below the process's file
#: descriptors (1024 by default) with the pool's connections beside it.
DEFAULT_MAX_CONNECTIONS = 800
#: While draining, a kept-alive connection idle this long is closed. A client that sends
#: on it just then still loses its request (the race no server can close: gunicorn and
#: nginx close idle connections at once), so the wait is long enough for a busy client,
#: even one starved of CPU, to have sent its next request and met the
#: ``Connection: close``, and short of uvicorn's graceful shutdown bound (5 s), after
#: which requests are cancelled. (1.0 s: one reset in 20 runs of
#: scripts/rolling_restart_load.py --via serve, on a machine at load 15.)
DRAIN_IDLE_S = 3.0


def _raw_response(status: int, reason: str, message: str) -> bytes:
    body = json.dumps({"error": message}, separators=(",", ":")).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\n"
        "content-type: application/json\r\n"
        f"content-length: {len(body)}\r\n"
        "connection: close\r\n\r\n"
    ).encode("latin-1")
    return head + body


_TIMEOUT = _raw_response(408, "Request Timeout", "request timeout")
_BUSY_BODY = json.dumps({"error": "service unavailable"}, separators=(",", ":")).encode()


async def _refuse(scope: Any, receive: Any, send: Any) -> None:
    """The app of a connection over the bound: 503, and the connection closes after."""
    await send(
        {
            "type": "http.response.start",
            "status": 503,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", b"%d" % len(_BUSY_BODY)),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": _BUSY_BODY})


class GuardedProtocol(HttpToolsProtocol):
    """``HttpToolsProtocol`` with the module's deadline, bound and drain."""

    request_timeout_s: ClassVar[float] = DEFAULT_REQUEST_TIMEOUT_S
    max_connections: ClassVar[int] = DEFAULT_MAX_CONNECTIONS
    drain_idle_s: ClassVar[float] = DRAIN_IDLE_S

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self._deadline: TimerHandle | None = None
        self._begun = False  # a request's first byte came, its body is not complete
        self._head_done = False  # that request's head is complete (the app runs)
        self._draining = False
        self._idle_since = time.monotonic()

    # -- the deadline ------------------------------------------------------------------

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.request_timeout_s, self._expired)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expired(self) -> None:
        self._deadline = None
        if self.transport.is_closing():
            return
        cycle = self.cycle if self._head_done else None
        if not self._begun:
            self.transport.close()  # not a byte of a request: nobody to answer
            return
        if cycle is not None:
            if cycle.response_started:
                # The app answered early (a 400 before reading the body) or is writing:
                # an answer is there or on its way; only the connection goes.
                if cycle.response_complete:
                    self.transport.close()
                return
            # The app awaits the body: it is told the client left and answers nothing.
            cycle.disconnected = True
            cycle.message_event.set()
        self.transport.write(_TIMEOUT)
        self.transport.close()

    # -- uvicorn's callbacks, extended -------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if len(self.connections) > self.max_connections:
            self.app = _refuse
        self._arm()  # the first request's deadline runs from the connection's opening

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._begun = True
        self._head_done = False
        self._arm()

    def on_headers_complete(self) -> None:
        super().on_headers_complete()
        self._head_done = True
        if self._draining and self.cycle is not None:
            self.cycle.keep_alive = False  # served, then closed: the drain goes on

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._begun = False
        self._disarm()

    def on_response_complete(self) -> None:
        self._idle_since = time.monotonic()
        super().on_response_complete()

    def shutdown(self) -> None:
        """Drain (see the module): in flight, answer then close; idle, close once quiet."""
        self._draining = True
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.keep_alive = False
            return
        if self._begun:
            return  # a request is arriving: its answer will carry Connection: close
        self._unset_keepalive_if_required()
        wait = max(0.0, self._idle_since + self.drain_idle_s - time.monotonic())
        self.timeout_keep_alive_task = self.loop.call_later(wait, self._close_if_idle)

    def _close_if_idle(self) -> None:
        self.timeout_keep_alive_task = None
        if not self._begun and not self.transport.is_closing():
            self.transport.close()


def protocol_class(
    *,
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
    max_connections: int = DEFAULT_MAX_CONNECTIONS,
    drain_idle_s: float = DRAIN_IDLE_S,
) -> type[GuardedProtocol]:
    """A ``GuardedProtocol`` with these bounds, for ``uvicorn.Config(http=...)``."""
    if request_timeout_s <= 0 or max_connections < 1 or drain_idle_s < 0:
        raise ValueError(
            "need request_timeout_s > 0, max_connections >= 1, drain_idle_s >= 0:"
            f" {request_timeout_s}, {max_connections}, {drain_idle_s}"
        )
    return type(
        "GuardedProtocol",
        (GuardedProtocol,),
        {
            "request_timeout_s": request_timeout_s,
            "max_connections": max_connections,
            "drain_idle_s": drain_idle_s,
        },
    )
