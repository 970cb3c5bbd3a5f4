"""Exhaust the service's connection pool: hold its connections; record each refusal's pool state."""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, Self

import psycopg_pool

from experiments.faults.held import HeldFault
from experiments.faults.threaded import ThreadedFault
from experiments.faults.window import Windows
from experiments.history import Op
from experiments.result import Verdict

__all__ = ["PoolHog", "PoolRefusals", "PoolWatch", "Refusal", "judge_refusals"]


@dataclass
class PoolHog(HeldFault):
    """Takes ``count`` connections out of a pool and keeps them for ``hold_s`` seconds.

    While held, callers get only what is left; with all of them held every call
    waits ``pool_timeout`` and fails ``Unavailable``. The connections go back to
    the pool untouched (idle) at the end. ``start()`` returns once they are held.
    """

    pool: psycopg_pool.ConnectionPool[Any]
    count: int
    hold_s: float = 1.0
    acquire_timeout_s: float = 10.0
    windows: Windows = field(default_factory=lambda: Windows("pool_exhausted"))
    held: int = 0
    error: BaseException | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _ready: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    THREAD = "nemesis-pool-hog"

    def start(self) -> Self:
        super().start()
        self._ready.wait(self.acquire_timeout_s + 5)
        if self.error is not None:
            raise RuntimeError(f"could not take {self.count} pool connections: {self.error}")
        return self

    def _run(self) -> None:
        try:
            with ExitStack() as stack:
                for _ in range(self.count):
                    stack.enter_context(self.pool.connection(timeout=self.acquire_timeout_s))
                    self.held += 1
                with self.windows.active("exhausted"):
                    self._ready.set()
                    self._stop.wait(self.hold_s)
        except BaseException as err:  # reported by start()
            self.error = err
        finally:
            self._ready.set()


@dataclass
class PoolWatch(ThreadedFault):
    """Samples a pool's stats every ``interval_s`` while a load runs (an observer, not a fault).

    A load with far more callers than connections can exhaust a pool by itself: a
    refusal outside the nemesis's window is then the pool doing its job, not a bug.
    The samples tell the two apart: ``no_idle_during(a, b)`` says whether, at some
    sample in ``[a, b]``, the pool had no idle connection. Bounded by
    ``max_duration_s`` and ``max_samples``; stops by itself.
    """

    stats: Callable[[], dict[str, int]]
    interval_s: float = 0.005
    max_duration_s: float = 120.0
    max_samples: int = 100_000
    #: (monotonic ns, idle connections, callers waiting)
    samples: list[tuple[int, int, int]] = field(default_factory=list)
    windows: Windows = field(default_factory=lambda: Windows("pool_watch"))
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    THREAD = "nemesis-pool-watch"

    def _join_s(self) -> float:
        return 10.0

    def no_idle_during(self, start_ns: int, end_ns: int) -> bool:
        return any(start_ns <= t <= end_ns and idle == 0 for t, idle, _ in self.samples)

    def _run(self) -> None:
        deadline = time.monotonic() + self.max_duration_s
        while len(self.samples) < self.max_samples and time.monotonic() < deadline:
            st = self.stats()
            self.samples.append(
                (time.monotonic_ns(), st.get("pool_available", 0), st.get("requests_waiting", 0))
            )
            if self._stop.wait(self.interval_s):
                return


def _measures(pool: psycopg_pool.ConnectionPool[Any]) -> dict[str, int]:
    st = pool.get_stats()
    size = int(st.get("pool_size", 0))
    available = int(st.get("pool_available", 0))
    return {
        "pool_size": size,
        "available": available,
        "in_use": size - available,
        "waiting": int(st.get("requests_waiting", 0)),
    }


@dataclass(frozen=True)
class Refusal:
    """One connection request the pool refused: when its wait began and ended, the
    timeout it had, the pool's own timeout (what a caller naming none waits), and the
    pool's state (size, idle, in use, waiting) at both ends."""

    wait_start_ns: int
    refused_ns: int
    timeout_s: float
    pool_timeout_s: float
    at_start: dict[str, int]
    at_refusal: dict[str, int]

    @property
    def waited_s(self) -> float:
        return (self.refused_ns - self.wait_start_ns) / 1e9

    def fault(self) -> str | None:
        """Why this refusal was not the pool doing its job, or None when it was.

        A pool gives an idle connection at once and hands a returned one to the first
        waiter, so a sound refusal waited out its whole timeout with no connection
        idle. The state is read just before the request and just after the refusal; a
        connection can come or go between a read and the pool's own decision, so
        one end without an idle connection is enough (both ends idle is not a race).
        """
        if self.at_start["available"] > 0 and self.at_refusal["available"] > 0:
            return (
                f"refused after {self.waited_s:.3f}s with {self.at_refusal['available']} of"
                f" {self.at_refusal['pool_size']} connections idle"
            )
        # 10 ms of grace: the pool's own clock check and ours are not the same instant.
        if self.waited_s < self.timeout_s - 0.01:
            return f"refused after {self.waited_s:.3f}s, before its {self.timeout_s:.3f}s timeout"
        # A request shorter than the pool's timeout is one slice of a caller's wait (the
        # service waits in slices while its breaker suspects the database): the caller
        # was refused by its last slice, not after its whole timeout.
        if self.timeout_s < self.pool_timeout_s - 0.01:
            return (
                f"refused after {self.waited_s:.3f}s, a wait of {self.timeout_s:.3f}s asked"
                f" of a pool whose timeout is {self.pool_timeout_s:.3f}s (a sliced wait)"
            )
        return None

    def to_dict(self, origin_ns: int = 0) -> dict[str, Any]:
        return {
            "wait_start_s": round((self.wait_start_ns - origin_ns) / 1e9, 6),
            "waited_s": round(self.waited_s, 6),
            "timeout_s": self.timeout_s,
            "pool_timeout_s": self.pool_timeout_s,
            "at_start": self.at_start,
            "at_refusal": self.at_refusal,
        }


@dataclass
class PoolRefusals:
    """Records every connection request a pool refuses, with the pool's state at that moment.

    ``start()`` wraps the pool's ``getconn`` (the one door the service takes to a
    connection); ``stop()`` puts it back. Bounded by ``max_records``. An observer,
    not a fault: its windows label nothing.
    """

    pool: psycopg_pool.ConnectionPool[Any]
    max_records: int = 100_000
    refusals: list[Refusal] = field(default_factory=list)
    windows: Windows = field(default_factory=lambda: Windows("pool_refusals"))
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _installed: bool = field(default=False, repr=False)

    def start(self) -> PoolRefusals:
        if self._installed:
            return self
        inner = self.pool.getconn
        pool_timeout = float(self.pool.timeout)

        def getconn(timeout: float | None = None) -> Any:
            at_start = _measures(self.pool)
            started = time.monotonic_ns()
            try:
                return inner(timeout)
            except psycopg_pool.PoolTimeout:
                refused = time.monotonic_ns()
                record = Refusal(
                    wait_start_ns=started,
                    refused_ns=refused,
                    timeout_s=pool_timeout if timeout is None else float(timeout),
                    pool_timeout_s=pool_timeout,
                    at_start=at_start,
                    at_refusal=_measures(self.pool),
                )
                with self._lock:
                    if len(self.refusals) < self.max_records:
                        self.refusals.append(record)
                raise

        self.pool.getconn = getconn  # type: ignore[method-assign]
        self._installed = True
        return self

    def stop(self) -> None:
        if self._installed:
            del self.pool.getconn  # the class's method shows through again
            self._installed = False


def judge_refusals(
    unavailable: list[Op], refusals: list[Refusal], *, name: str = "unavailable_only_when_exhausted"
) -> Verdict:
    """Each ``unavailable`` op is excused only by a refusal of its own, recorded during
    it, that the pool's state at that moment justifies (``Refusal.fault``).

    Which refusal was whose is not recorded (over HTTP the op's thread is the client's,
    the refusal's the server's), so the ops are excused if each can be given a sound
    refusal inside it, no two the same one: a maximum matching. Taking, op by op in
    invoke order, the first refusal that fits is not enough: over HTTP requests reach
    the pool in another order than their clients invoked them, and an op that takes a
    later op's refusal can leave that op none, though a matching exists (2-8 of ~110
    refused ops per failing run, each with its own refusal inside it).

    An op left without one is a stray: refused without a pool refusal inside it (the
    database timed out, say), or with only refusals that came while connections sat
    idle, before their timeout, or as a slice of a longer wait.
    """
    pending = sorted(refusals, key=lambda r: r.wait_start_ns)
    starts = [r.wait_start_ns for r in pending]
    faults = [r.fault() for r in pending]
    ops = sorted(unavailable, key=lambda o: o.invoke_ns)

    def inside(op: Op) -> list[int]:
        first = bisect.bisect_left(starts, op.invoke_ns)
        last = bisect.bisect_right(starts, op.complete_ns)
        return [i for i in range(first, last) if pending[i].refused_ns <= op.complete_ns]

    during = [inside(op) for op in ops]
    owner = _match([[i for i in cands if faults[i] is None] for cands in during])
    matched = set(owner.values())
    stray: list[str] = []
    for k, op in enumerate(ops):
        if k in matched:
            continue
        why = next((faults[i] for i in during[k] if faults[i] is not None), None)
        stray.append(f"op {op.op_id}: {why or 'unavailable without a pool refusal during it'}")
    sound = len(matched)
    figures = {
        "unavailable": len(unavailable),
        "refusals_recorded": len(refusals),
        "sound": sound,
        "stray": len(stray),
        "max_idle_at_refusal": max((r.at_refusal["available"] for r in refusals), default=None),
        "max_waiting_at_refusal": max((r.at_refusal["waiting"] for r in refusals), default=None),
    }
    if stray:
        shown = "; ".join(stray[:5]) + (f" (and {len(stray) - 5} more)" if len(stray) > 5 else "")
        return Verdict(
            name, False, f"{len(stray)} of {len(unavailable)} refusals unsound: {shown}", figures
        )
    return Verdict(
        name,
        True,
        f"all {len(unavailable)} refusals came from the pool, each after its full timeout"
        " with no connection idle",
        figures,
    )


def _match(candidates: list[list[int]]) -> dict[int, int]:
    """A maximum matching of items to candidates (item ``k`` may take any of
    ``candidates[k]``), as {candidate: item}: augmenting paths, one search per item
    (Kuhn's algorithm), iterative so that no chain of reassignments meets the recursion limit.
    """
    owner: dict[int, int] = {}
    for root in range(len(candidates)):
        seen: set[int] = set()
        # Each frame: an item and the position of its next candidate to try.
        stack: list[tuple[int, int]] = [(root, 0)]
        path: list[int] = []  # the candidate each frame below the top is reaching through
        while stack:
            item, pos = stack[-1]
            options = candidates[item]
            while pos < len(options) and options[pos] in seen:
                pos += 1
            if pos == len(options):
                stack.pop()  # no way through this item
                if path:
                    path.pop()
                continue
            cand = options[pos]
            seen.add(cand)
            stack[-1] = (item, pos + 1)
            holder = owner.get(cand)
            if holder is None:
                # Free: shift every candidate along the path to the item that reached it.
                for (it, _), c in zip(stack, [*path, cand], strict=True):
                    owner[c] = it
                break
            path.append(cand)
            stack.append((holder, 0))
    return owner
