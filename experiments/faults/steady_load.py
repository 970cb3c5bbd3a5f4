"""A steady claim load over HTTP beside a fault: threads claiming for a new user each time.

``SteadyLoad(url, coupons, threads)`` runs ``threads`` threads, each on one kept-alive
connection of the lab's HTTP client (``experiments.clients.HttpClient``, every answer
judged by the contract), claiming the coupons in turn for a new user every time (one
read in ``read_every``, when given) until ``stop()``, at most ``max_ops`` ops a thread.
Every op is kept (``Op``: result, status, invoke and complete times), so a caller counts
what failed or measures latency. On coupons of ample stock every result but ``ok`` is
a failure. What uses it: ``scripts/rolling_restart_load.py`` (the workers roll while it
runs) and ``benchmarks/slow_clients.py`` (normal clients beside a slowloris crowd).

    with SteadyLoad(url, ["c0", "c1"], 16, read_every=10) as load:
        group.rolling_restart()
    failed = [o for o in load.ops if o.result != "ok"]
"""

from __future__ import annotations

import itertools
import threading
import time
import uuid
from collections.abc import Sequence
from types import TracebackType

from experiments.clients import HttpClient
from experiments.history import Op

__all__ = ["MAX_OPS_PER_THREAD", "SteadyLoad"]

#: A bound in count beside the caller's in time: at most this many ops per thread.
MAX_OPS_PER_THREAD = 20_000


class SteadyLoad:
    """See the module."""

    def __init__(
        self,
        url: str,
        coupons: Sequence[str],
        threads: int,
        *,
        read_every: int = 0,
        max_ops: int = MAX_OPS_PER_THREAD,
        timeout_s: float = 10.0,
    ) -> None:
        if not coupons or threads < 1 or max_ops < 1 or read_every < 0:
            raise ValueError(
                "need coupons, threads >= 1, max_ops >= 1, read_every >= 0:"
                f" {list(coupons)}, {threads}, {max_ops}, {read_every}"
            )
        self.coupons = list(coupons)
        self.read_every = read_every
        self.max_ops = max_ops
        self._client = HttpClient(url, timeout_s=timeout_s)
        self._tag = uuid.uuid4().hex[:8]  # users new to every load on the same coupons
        self._ids = itertools.count()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        #: Every op ended so far (complete once ``stop()`` returned).
        self.ops: list[Op] = []
        self._threads = [
            threading.Thread(target=self._work, args=(w,), name=f"steady-load-{w}", daemon=True)
            for w in range(threads)
        ]

    def start(self) -> SteadyLoad:
        for t in self._threads:
            t.start()
        return self

    def stop(self, join_s: float = 30.0) -> list[Op]:
        """Stop the threads (each ends its op in flight) and return every op."""
        self._stop.set()
        deadline = time.monotonic() + join_s
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        self._client.close()
        return self.ops

    def run_for(self, seconds: float) -> list[Op]:
        """Start, let it run ``seconds``, stop: every op."""
        self.start()
        self._stop.wait(seconds)
        return self.stop()

    def __enter__(self) -> SteadyLoad:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _work(self, w: int) -> None:
        done: list[Op] = []
        try:
            for step in range(self.max_ops):
                if self._stop.is_set():
                    break
                coupon = self.coupons[step % len(self.coupons)]
                op_id = next(self._ids)
                if self.read_every and step % self.read_every == self.read_every - 1:
                    op = Op(op_id, w, "get", coupon)
                else:
                    op = Op(op_id, w, "claim", coupon, user=f"{self._tag}-{w}-{step}")
                done.append(self._client.invoke(op))
        finally:
            self._client.release()
            with self._lock:
                self.ops.extend(done)
