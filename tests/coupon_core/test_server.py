"""The server runner: sockets that asyncio will mark TCP_NODELAY."""

from __future__ import annotations

import asyncio.base_events
import socket

from coupon_core.server import _bind


def test_accepted_sockets_get_tcp_nodelay() -> None:
    # asyncio sets TCP_NODELAY on an accepted socket only when its proto says TCP,
    # and accepted sockets copy the listener's proto. With proto 0 every JSON
    # response waited 40 ms for a delayed ACK on keep-alive connections.
    listener = _bind("127.0.0.1", 0)
    try:
        listener.listen(1)
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            accepted, _ = listener.accept()
            with accepted:
                asyncio.base_events._set_nodelay(accepted)  # what the event loop does
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        listener.close()
