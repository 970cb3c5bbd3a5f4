"""Slow clients: raw-socket probes of a server's request deadlines, and a slowloris crowd.

Each probe opens one TCP connection to ``host:port``, misbehaves in one way, and
reports what the server did as a ``ProbeResult``: answered (``ending="status"``, a
whole answer with its status and body, the connection closed after it or not), closed
without an answer (``"closed"``, or ``"reset"``), or neither within the probe's own
``bound_s`` (``"open"``: the server holds the connection, the failure these probes look
for). ``seconds`` runs from the connection's
opening to the server's answer or close; ``bytes_sent`` is what the probe sent.

    from experiments.faults.slow_clients import PROBES, run_probe

    r = run_probe("slow_body", "127.0.0.1", 3000, bound_s=30)  # a body 512 bytes short
    assert r.ending == "status" and r.status == 408 and r.seconds < 15

    for name in PROBES:                                         # all four, one runner
        print(run_probe(name, "127.0.0.1", 3000, bound_s=30))

Each probe is a ``ProbeSpec`` (what it sends before it waits), run by ``run_probe``;
keywords given to ``run_probe`` change a spec's fields (``head_interval_s=0.2``):

- ``slow_headers``: the request head one byte every ``head_interval_s`` (slowloris).
- ``slow_body``: the whole head, then the body's JSON but not its 512 bytes of padding
  (the Content-Length counts them), then nothing.
- ``idle``: connect and send nothing.
- ``cut_body``: the head, 8 bytes of the body, then the probe shuts its side (a FIN:
  the body cut mid-way) and waits for the server's end.

Every request is a claim (``POST /api/coupons/claim``) of ``coupon`` for ``user``,
complete and valid had it arrived: a caller checks that none wrote a claim row. A
server keeping DESIGN.md's "Server deadlines" answers each with a 408 (``idle``: a
close; ``cut_body``: a close, nothing to answer) within its request timeout, no 5xx.

``SlowCrowd(host, port, n)`` holds ``n`` slowloris connections open (one thread, a
header byte per connection every ``interval_s``, a new connection for each the server
closes) until ``stop()``; a benchmark measures normal clients beside it
(``benchmarks/slow_clients.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import select
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "PROBES",
    "Ending",
    "ProbeResult",
    "ProbeSpec",
    "SlowCrowd",
    "claim_request",
    "run_probe",
]

#: How a probe's connection ended: the server answered, closed (FIN), reset it, or
#: did nothing within the probe's bound.
Ending = Literal["status", "closed", "reset", "open"]

DEFAULT_BOUND_S = 30.0
_READ_LIMIT = 64 * 1024  # an answer to a probe is small; more is not read


@dataclass(frozen=True)
class ProbeResult:
    """What one probe saw."""

    probe: str
    ending: Ending
    #: The answer's status (``ending == "status"``), else None.
    status: int | None
    #: Seconds from the connection's opening to the answer or close (or the bound).
    seconds: float
    bytes_sent: int
    #: The answer's body (at most 64 KiB), b"" without one.
    body: bytes = b""
    content_type: str | None = None

    @property
    def freed(self) -> bool:
        """The server let the connection go (answered and closed, or closed)."""
        return self.ending != "open"


def claim_request(
    host: str, port: int, coupon: str, user: str, padding: int = 0
) -> tuple[bytes, bytes]:
    """A complete claim request: its head and its body (the JSON, then ``padding``
    spaces, counted in the Content-Length), as bytes."""
    body = json.dumps({"user_id": user, "coupon_name": coupon}).encode() + b" " * padding
    head = (
        "POST /api/coupons/claim HTTP/1.1\r\n"
        f"Host: {host}:{port}\r\n"
        "Content-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode("latin-1")
    return head, body


class _Conn:
    """One probe connection: send, and see whether the server has answered or closed."""

    def __init__(self, host: str, port: int, bound_s: float) -> None:
        self.started = time.monotonic()
        self.deadline = self.started + bound_s
        self.sock = socket.create_connection((host, port), timeout=bound_s)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sent = 0
        self.received = b""
        self.ending: Ending | None = None
        self.ended_at: float | None = None

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self.deadline

    def send(self, data: bytes) -> bool:
        """Send ``data`` unless the server has ended the connection; False once it has."""
        if self.poll(0):
            return False
        try:
            self.sock.sendall(data)
        except OSError:
            self.poll(1.0)  # the answer, or the close, that made the send fail
            if self.ending is None:
                self._end("reset")
            return False
        self.sent += len(data)
        return True

    def poll(self, wait_s: float) -> bool:
        """Read what the server sent within ``wait_s``; True once it answered or closed."""
        if self.ending is not None:
            return True
        end = min(time.monotonic() + wait_s, self.deadline)
        while True:
            left = max(0.0, end - time.monotonic())
            if not _readable([self.sock], left):
                return False
            try:
                chunk = self.sock.recv(_READ_LIMIT)
            except OSError as err:
                self._end("reset" if err.errno in (errno.ECONNRESET, errno.EPIPE) else "closed")
                return True
            if not chunk:
                self._end("status" if self.received else "closed")
                return True
            if len(self.received) < _READ_LIMIT:
                self.received += chunk
            if _whole_answer(self.received):
                # Answered (a 408 closes after it; a server that took the request may
                # keep the connection alive): the answer is the ending, and its time.
                self._end("status")
                return True

    def _end(self, ending: Ending) -> None:
        if ending == "reset" and self.received:
            ending = "status"  # answered, then reset (the rest of our body unread)
        self.ending = ending
        self.ended_at = time.monotonic()

    def wait(self) -> None:
        """Until the server ends the connection or the bound passes."""
        while self.ending is None and time.monotonic() < self.deadline:
            self.poll(self.deadline - time.monotonic())

    def result(self, probe: str) -> ProbeResult:
        with contextlib.suppress(OSError):
            self.sock.close()
        ending: Ending = self.ending or "open"
        end = self.ended_at if self.ended_at is not None else time.monotonic()
        status, ctype, body = _parse(self.received) if ending == "status" else (None, None, b"")
        return ProbeResult(
            probe, ending, status, round(end - self.started, 4), self.sent, body, ctype
        )


def _readable(socks: list[socket.socket], wait_s: float) -> list[socket.socket]:
    # poll, not select: select() fails on descriptors numbered past 1024, and a crowd
    # of 500 beside a test's own sockets gets there.
    if not socks:
        return []
    poller = select.poll()
    by_fd = {s.fileno(): s for s in socks}
    for fd in by_fd:
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
    return [by_fd[fd] for fd, _ in poller.poll(wait_s * 1000)]


def _whole_answer(raw: bytes) -> bool:
    head, sep, body = raw.partition(b"\r\n\r\n")
    if not sep:
        return False
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            try:
                return len(body) >= int(value.strip())
            except ValueError:
                return True
    return True


def _parse(raw: bytes) -> tuple[int | None, str | None, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    try:
        status = int(lines[0].split()[1])
    except (IndexError, ValueError):
        return None, None, body
    ctype = None
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-type":
            ctype = value.strip().decode("latin-1")
    return status, ctype, body


@dataclass(frozen=True)
class ProbeSpec:
    """One way to misbehave: what a probe sends on its connection before it waits.

    The request is a complete, valid claim (``claim_request``), its JSON body followed
    by ``padding`` spaces (JSON allows them; the head's Content-Length counts them).
    The probe sends, in order: nothing at all (``silent``); or the head, at once or one
    byte every ``head_interval_s``, then ``body_sent`` bytes of the body (None: all but
    the padding, so what came is a whole claim a server must not take as the request),
    then shuts its side (``shut``: a FIN, the body cut mid-way). Then it waits for the
    server's answer or close, at most its ``bound_s``.
    """

    name: str
    silent: bool = False
    head_interval_s: float = 0.0
    padding: int = 0
    body_sent: int | None = None
    shut: bool = False

    def __post_init__(self) -> None:
        if self.head_interval_s < 0 or self.padding < 0:
            raise ValueError(f"{self.name}: head_interval_s and padding must be >= 0")
        if self.body_sent is not None and self.body_sent < 0:
            raise ValueError(f"{self.name}: body_sent must be >= 0, not {self.body_sent}")


#: The four probes, by name (see the module).
PROBES: dict[str, ProbeSpec] = {
    spec.name: spec
    for spec in (
        ProbeSpec("slow_headers", head_interval_s=0.5),
        ProbeSpec("slow_body", padding=512),
        ProbeSpec("idle", silent=True),
        ProbeSpec("cut_body", padding=512, body_sent=8, shut=True),
    )
}


def run_probe(
    probe: str | ProbeSpec,
    host: str,
    port: int,
    *,
    bound_s: float = DEFAULT_BOUND_S,
    coupon: str = "slow-probe",
    user: str = "slow-probe",
    **changes: Any,
) -> ProbeResult:
    """Run one probe (a ``PROBES`` name or a spec; ``changes`` replace its fields, e.g.
    ``head_interval_s=0.2``) against ``host:port``: what the server did, within ``bound_s``."""
    spec = PROBES[probe] if isinstance(probe, str) else probe
    if changes:
        spec = dataclasses.replace(spec, **changes)
    head, body = claim_request(host, port, coupon, user, spec.padding)
    conn = _Conn(host, port, bound_s)
    if not spec.silent and _send_head(conn, head, spec.head_interval_s):
        sent = body[: len(body) - spec.padding if spec.body_sent is None else spec.body_sent]
        # A server without a deadline gets the whole slow head, then the body, in the end.
        if (not sent or conn.send(sent)) and spec.shut:
            with contextlib.suppress(OSError):
                conn.sock.shutdown(socket.SHUT_WR)
    conn.wait()
    return conn.result(spec.name)


def _send_head(conn: _Conn, head: bytes, interval_s: float) -> bool:
    """The head, at once or a byte every ``interval_s``; False once the server ended it."""
    if interval_s <= 0:
        return conn.send(head)
    for i in range(len(head)):
        # Past the probe's bound, no more: a server without a deadline would otherwise
        # get the rest at once, and the request with it.
        if conn.expired or not conn.send(head[i : i + 1]) or conn.poll(interval_s):
            return False
    return not conn.expired


class SlowCrowd:
    """``n`` slowloris connections held open from one thread until ``stop()``.

    Each sends one byte of a request head every ``interval_s``; one the server closes
    (its deadline) is replaced at once by a new one, so the crowd stays at ``n``.
    ``opened`` and ``freed`` count connections opened and ended by the server.
    """

    def __init__(self, host: str, port: int, n: int, *, interval_s: float = 1.0) -> None:
        if n < 1 or interval_s <= 0:
            raise ValueError(f"need n >= 1 and interval_s > 0: {n}, {interval_s}")
        self.host, self.port, self.n, self.interval_s = host, port, n, interval_s
        self.opened = 0
        self.freed = 0
        self.failed_connects = 0
        self._head, _ = claim_request(host, port, "slow-crowd", "slow-crowd")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="slow-crowd", daemon=True)
        self._socks: dict[socket.socket, int] = {}  # socket -> bytes of the head sent

    def start(self) -> SlowCrowd:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)

    def __enter__(self) -> SlowCrowd:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def open_now(self) -> int:
        return len(self._socks)

    def _connect(self) -> None:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=5)
        except OSError:
            self.failed_connects += 1
            return
        sock.setblocking(False)
        self._socks[sock] = 0
        self.opened += 1

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                while len(self._socks) < self.n and not self._stop.is_set():
                    self._connect()
                    if self.failed_connects > 10 * self.n:
                        return  # the server is gone: nothing to hold
                ended = self._ended()
                for sock in list(self._socks):
                    sent = self._socks[sock]
                    if sock in ended or sent >= len(self._head) - 1:
                        # Ended by the server, or the head all but complete: never finish it.
                        self.freed += sock in ended
                        self._drop(sock)
                        continue
                    try:
                        sock.send(self._head[sent : sent + 1])
                        self._socks[sock] = sent + 1
                    except OSError:
                        self.freed += 1
                        self._drop(sock)
                self._stop.wait(self.interval_s)
        finally:
            for sock in list(self._socks):
                self._drop(sock)

    def _ended(self) -> set[socket.socket]:
        # Readable: an answer (a 408) or a close; either way the server ended it.
        return set(_readable(list(self._socks), 0))

    def _drop(self, sock: socket.socket) -> None:
        self._socks.pop(sock, None)
        with contextlib.suppress(OSError):
            sock.close()
