"""The sockets of a server group: one listening SO_REUSEPORT socket (a slot) per worker.

The parent binds and listens them; each worker inherits its own (``--listen-fd``) and
the group keeps every slot open until it stops. The kernel spreads new connections over
the slots by a hash of each connection's addresses, as it did over the workers' own
listeners; a keep-alive connection stays with the worker that accepted it. A slot
outlives its worker: a replacement (rolling or after a crash) serves the same socket,
so the connections waiting in its queue are served, not reset (the kernel resets a
closing SO_REUSEPORT listener's queue), and the spread of connections over the slots
never changes.
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterable

from coupon_core.server import BACKLOG, ServerError, accepts_connections, bind_socket

__all__ = ["close_slots", "open_slots"]


def open_slots(host: str, port: int, n: int) -> list[socket.socket]:
    """``n`` listening SO_REUSEPORT sockets on ``host:port`` (0: the kernel picks one port
    for all). ServerError if the port is taken, by any server, SO_REUSEPORT or not."""
    if n < 1:
        raise ValueError(f"need at least one slot, not {n}")
    slots = [bind_socket(host, port, reuse_port=True)]
    bound = int(slots[0].getsockname()[1])
    try:
        # Checked before any slot listens (a bound socket takes no connections).
        if port and accepts_connections(host, bound):
            # Another SO_REUSEPORT server (an earlier group) would share the port silently.
            raise ServerError(f"cannot listen on {host}:{bound}: a server is listening there")
        slots += [bind_socket(host, bound, reuse_port=True) for _ in range(n - 1)]
        for slot in slots:
            slot.listen(BACKLOG)
    except BaseException:
        close_slots(slots)
        raise
    return slots


def close_slots(slots: Iterable[socket.socket]) -> None:
    for slot in slots:
        with contextlib.suppress(OSError):
            slot.close()
