"""A loopback TCP proxy between the service and the database: latency, throttling, resets, stalls.

Modelled on psycopg's ``tests/fix_proxy.py`` (a proxy a test can stop and start),
written with threads so it needs no external tool. The service connects to the
proxy's port (``proxy.conninfo(db_url)``) instead of the database's; the phase can be
switched at run time and every non-``pass`` phase is recorded as a window.

Phases:

    pass      bytes flow untouched
    latency   each chunk from the service to the database waits ``latency_s`` ±
              ``jitter_s`` (seeded), so each round trip takes about that much longer;
              ``latency_direction`` "down" delays the other way (database to client:
              the WAL a standby receives), "both" delays both
    throttle  both directions limited to ``bytes_per_s``
    stall     nothing is read or forwarded: a peer that stopped answering (TCP stays up)
    reset     live connections are cut with RST, new ones are refused the same way

Bounded: at most ``max_connections`` live connections (more are refused), two
threads each, every wait short; ``stop()`` closes everything and joins every thread.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from psycopg.conninfo import conninfo_to_dict, make_conninfo

from experiments.faults.window import Windows

__all__ = ["PHASES", "PhaseName", "TcpProxy"]

PhaseName = Literal["pass", "latency", "throttle", "stall", "reset"]
PHASES: tuple[PhaseName, ...] = ("pass", "latency", "throttle", "stall", "reset")
Direction = Literal["up", "down", "both"]
_CHUNK = 65536
_TICK = 0.02  # how often a pump looks at the stop flag and the phase


def _rst_close(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0): the peer sees 'connection reset'."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


@dataclass
class _Link:
    client: socket.socket
    server: socket.socket
    threads: list[threading.Thread] = field(default_factory=list)
    closed: bool = False


@dataclass
class TcpProxy:
    """A threaded TCP proxy on 127.0.0.1 in front of ``target_host:target_port``."""

    target_host: str
    target_port: int
    seed: int = 0
    max_connections: int = 200
    listen_host: str = "127.0.0.1"
    port: int = 0
    phase: PhaseName = "pass"
    latency_s: float = 0.0
    jitter_s: float = 0.0
    bytes_per_s: int = 0
    latency_direction: Direction = "up"
    windows: Windows = field(default_factory=lambda: Windows("network"))
    #: Figures: connections accepted / refused / reset, bytes forwarded each way.
    accepted: int = 0
    refused: int = 0
    resets: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    _rng: random.Random = field(init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _links: list[_Link] = field(default_factory=list, repr=False)
    _listener: socket.socket | None = field(default=None, repr=False)
    _acceptor: threading.Thread | None = field(default=None, repr=False)
    _stopping: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    @classmethod
    def for_url(cls, url: str, **kwargs: object) -> TcpProxy:
        """A proxy in front of the TCP host and port of a PostgreSQL URL."""
        params = conninfo_to_dict(url)
        host = str(params.get("host") or "")
        if not host or host.startswith("/"):
            raise ValueError(
                f"the proxy needs a TCP database address, not {host or 'a Unix socket'!r}"
            )
        return cls(host, int(str(params.get("port") or 5432)), **kwargs)  # type: ignore[arg-type]

    def reseed(self, seed: int) -> None:
        """Draw the jitter from ``seed`` from now on (replays a run's network faults)."""
        with self._lock:
            self.seed = seed
            self._rng.seed(seed)

    def conninfo(self, url: str) -> str:
        """``url`` rewritten to reach the database through this proxy."""
        params = conninfo_to_dict(url)
        params["host"] = self.listen_host
        params["port"] = str(self.port)
        params.pop("hostaddr", None)
        return make_conninfo("", **params)

    # -- lifecycle ---------------------------------------------------------------------

    def start(self) -> TcpProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.listen_host, self.port))
        listener.listen(128)
        listener.settimeout(_TICK * 5)
        self.port = int(listener.getsockname()[1])
        self._listener = listener
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="proxy-accept", daemon=True
        )
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._listener is not None:
            self._listener.close()
        with self._lock:
            links = list(self._links)
            self._links.clear()
        for link in links:
            self._close(link, rst=False)
        for link in links:
            for t in link.threads:
                t.join(timeout=5)
        self.windows.close_all()

    def __enter__(self) -> TcpProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def live_connections(self) -> int:
        with self._lock:
            return sum(1 for link in self._links if not link.closed)

    @property
    def threads(self) -> list[threading.Thread]:
        with self._lock:
            out = [t for link in self._links for t in link.threads]
        return [*out, *([self._acceptor] if self._acceptor else [])]

    # -- faults ------------------------------------------------------------------------

    def set_phase(
        self,
        phase: PhaseName,
        *,
        latency_s: float | None = None,
        jitter_s: float | None = None,
        bytes_per_s: int | None = None,
    ) -> None:
        """Switch to ``phase`` now; the previous phase's window closes, the new one opens."""
        if phase not in PHASES:
            raise ValueError(f"unknown proxy phase {phase!r}; choose one of {', '.join(PHASES)}")
        if phase == "throttle" and not (bytes_per_s or self.bytes_per_s):
            raise ValueError("throttle needs bytes_per_s > 0")
        with self._lock:
            previous = self.phase
            if latency_s is not None:
                self.latency_s = latency_s
            if jitter_s is not None:
                self.jitter_s = jitter_s
            if bytes_per_s is not None:
                self.bytes_per_s = bytes_per_s
            self.phase = phase
        if previous != "pass":
            self.windows.close(previous)
        if phase != "pass":
            self.windows.open(phase)
        if phase == "reset":
            self.reset()

    def reset(self) -> int:
        """Cut every live connection with RST (both sides); returns how many."""
        with self._lock:
            links = [link for link in self._links if not link.closed]
        for link in links:
            self._close(link, rst=True)
        with self._lock:
            self.resets += len(links)
        return len(links)

    # -- internals ---------------------------------------------------------------------

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                self._reap()
                continue
            except OSError:
                return
            with self._lock:
                live = sum(1 for link in self._links if not link.closed)
                refuse = self.phase == "reset" or live >= self.max_connections
            if refuse:
                with self._lock:
                    self.refused += 1
                _rst_close(client)
                continue
            try:
                server = socket.create_connection((self.target_host, self.target_port), timeout=5)
            except OSError:
                # The database is down: the service must see a failed connection, not a hang.
                with self._lock:
                    self.refused += 1
                _rst_close(client)
                continue
            link = _Link(client, server)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(5)
            up = threading.Thread(
                target=self._pump, args=(link, client, server, True), daemon=True, name="proxy-up"
            )
            down = threading.Thread(
                target=self._pump,
                args=(link, server, client, False),
                daemon=True,
                name="proxy-down",
            )
            link.threads = [up, down]
            with self._lock:
                self._links.append(link)
                self.accepted += 1
            up.start()
            down.start()

    def _reap(self) -> None:
        with self._lock:
            self._links = [
                link
                for link in self._links
                if not link.closed or any(t.is_alive() for t in link.threads)
            ]

    def _close(self, link: _Link, *, rst: bool) -> None:
        with self._lock:
            if link.closed:
                return
            link.closed = True
        for sock in (link.client, link.server):
            if rst:
                _rst_close(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def _stalled(self) -> bool:
        return self.phase == "stall"

    def _delay(self) -> float:
        with self._lock:
            if self.phase != "latency":
                return 0.0
            return max(0.0, self.latency_s + self._rng.uniform(-self.jitter_s, self.jitter_s))

    def _pump(self, link: _Link, src: socket.socket, dst: socket.socket, upstream: bool) -> None:
        try:
            while not self._stopping.is_set() and not link.closed:
                if self._stalled():
                    time.sleep(_TICK)
                    continue
                ready, _, _ = select.select([src], [], [], _TICK)
                if not ready:
                    continue
                data = src.recv(_CHUNK)
                if not data:
                    break
                way = "up" if upstream else "down"
                delayed = self.phase == "latency" and self.latency_direction in (way, "both")
                if delayed and not upstream:
                    # One wait per batch, not per chunk: drain what has arrived (bounded)
                    # so a delayed stream (WAL) falls behind by the delay, not more and more.
                    data += self._drain(src)
                # Read just as the stall began: hold it, a stalled peer forwards nothing.
                while self._stalled() and not self._stopping.is_set() and not link.closed:
                    time.sleep(_TICK)
                if delayed and (delay := self._delay()) > 0:
                    time.sleep(delay)
                self._send(dst, data)
                with self._lock:
                    if upstream:
                        self.bytes_up += len(data)
                    else:
                        self.bytes_down += len(data)
        except (OSError, ValueError):
            pass  # a reset or a close from the other pump: the link is over
        finally:
            self._close(link, rst=False)

    def _drain(self, src: socket.socket, limit: int = 1 << 20) -> bytes:
        """Whatever else ``src`` has ready now, up to ``limit`` bytes (no waiting)."""
        parts: list[bytes] = []
        size = 0
        while size < limit and select.select([src], [], [], 0)[0]:
            more = src.recv(_CHUNK)
            if not more:
                break
            parts.append(more)
            size += len(more)
        return b"".join(parts)

    def _send(self, dst: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view:
            rate = self.bytes_per_s if self.phase == "throttle" else 0
            if rate <= 0:
                dst.sendall(view)
                return
            # Small slices, each released after its share of time: a steady rate, not
            # bursts. The wait comes before the slice, so every message is held at least
            # one slice's time: sleeping after it let a claim's one round trip through at
            # once when the connection had been quiet (atomic over HTTP: +9.8 ms median
            # where the check asks +10, a FAIL in 2 of 4 runs, measured).
            piece = max(1, rate // 50)
            time.sleep(piece / rate)
            dst.sendall(view[:piece])
            view = view[piece:]
