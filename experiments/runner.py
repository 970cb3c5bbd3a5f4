"""The runner: a plan's workers as threads, released together by a barrier.

Threads are the project's concurrency model (the service and psycopg's pool are
synchronous). Every worker waits at one gate (a lock of its own, all released in one
loop once the last has arrived), so a stampede is a real one; the first invoke time of each worker gives the start spread actually
achieved. A client with ``ready(ops)`` gets it called on each worker's thread before
the barrier (the HTTP client connects, warms and encodes there), and ``release()``
when the worker is done. The whole run is bounded: past ``run_timeout_s`` no new operation starts
(those left are recorded ``unknown``, "not started"), the in-flight ones end by
their own timeout, and every thread is joined before ``run_plan`` returns.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from experiments.clients import Client
from experiments.errors import RunnerError
from experiments.history import History, Op
from experiments.plans import Plan, PlannedOp

__all__ = ["PhaseLabel", "RunReport", "RunnerError", "run_plan"]

#: A fixed phase label, or a callable read at each invoke (a fault running alongside
#: the load can move it: "before", "during", "after").
PhaseLabel = str | Callable[[], str | None] | None

NOT_STARTED = "not started: the run's time bound passed"


class _Gate:
    """Where the workers wait for the release: each parks on a lock of its own.

    ``open()`` releases them in one tight loop. A ``threading.Barrier`` (or an
    ``Event``) wakes its waiters through one condition whose lock each must take
    again in turn before it can return: the release itself was serialized.
    """

    def __init__(self, n: int) -> None:
        self._n = n
        self._locks = [threading.Lock() for _ in range(n)]
        for parked in self._locks:
            parked.acquire()
        self._arrived = 0
        self._count = threading.Lock()
        self._everyone = threading.Event()
        self._broken = False

    def wait(self, worker: int, timeout_s: float) -> bool:
        """Arrive and park; True when released, False when the gate broke or timed out."""
        with self._count:
            self._arrived += 1
            if self._arrived == self._n:
                self._everyone.set()
        released = self._locks[worker].acquire(timeout=timeout_s)
        return released and not self._broken

    def all_arrived(self, timeout_s: float) -> bool:
        return self._everyone.wait(timeout_s)

    def open(self) -> None:
        for parked in self._locks:
            parked.release()

    def break_open(self) -> None:
        self._broken = True
        self.open()


class _BarrierGate(_Gate):
    """The release before issue 10: one ``threading.Barrier`` (the main thread its last party)."""

    def __init__(self, n: int, timeout_s: float) -> None:
        self._n = n
        self._barrier = threading.Barrier(n + 1, timeout=timeout_s)
        self._broken = False

    def wait(self, worker: int, timeout_s: float) -> bool:
        try:
            self._barrier.wait()
        except threading.BrokenBarrierError:
            return False
        return not self._broken

    def all_arrived(self, timeout_s: float) -> bool:
        # The main thread's own wait is the release; arrival shows as n_waiting.
        deadline = time.monotonic() + timeout_s
        while self._barrier.n_waiting < self._n:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return True

    def open(self) -> None:
        with contextlib.suppress(threading.BrokenBarrierError):
            self._barrier.wait()

    def break_open(self) -> None:
        self._broken = True
        self._barrier.abort()


@dataclass
class RunReport:
    """What the runner measured about the run itself (not about the system)."""

    workers: int
    ops_planned: int
    ops_run: int
    not_started: int
    #: Seconds from the barrier's release to the last worker's end.
    wall_s: float
    #: max - min of the workers' first invoke, in ms: how "together" the release was.
    start_spread_ms: float | None
    #: The run bound ended the load (ops left unstarted, or a worker still busy at it).
    timed_out: bool
    #: The caller's ``stop`` ended it (a fault scenario's load stops after its fault).
    stopped: bool = False
    first_invoke_ns: dict[int, int] = field(default_factory=dict)
    #: When the barrier released the workers, and when the runner began starting the last one.
    released_ns: int = 0
    last_started_ns: int = 0

    def to_dict(self) -> dict[str, object]:
        return {
            "workers": self.workers,
            "ops_planned": self.ops_planned,
            "ops_run": self.ops_run,
            "not_started": self.not_started,
            "wall_s": round(self.wall_s, 4),
            "start_spread_ms": None
            if self.start_spread_ms is None
            else round(self.start_spread_ms, 3),
            "timed_out": self.timed_out,
            "stopped": self.stopped,
        }


def _label(phase: PhaseLabel) -> str | None:
    return phase() if callable(phase) else phase


def run_plan(
    plan: Plan,
    client: Client,
    history: History,
    *,
    run_timeout_s: float = 60.0,
    op_timeout_s: float = 10.0,
    phase: PhaseLabel = None,
    barrier_timeout_s: float = 30.0,
    stop: threading.Event | None = None,
    release_by: Literal["gate", "barrier"] = "gate",
) -> RunReport:
    """Run ``plan`` through ``client``, recording into ``history``; return the run's figures.

    ``stop`` lets a caller (a fault, a test) end the run early the same way the time
    bound does; the report tells them apart (``stopped``, ``timed_out``). The join
    waits ``op_timeout_s`` plus a grace for in-flight calls after the bound; a worker still alive then is a client that ignored its timeout,
    and ``RunnerError`` says so instead of returning with a thread left behind.
    ``release_by="barrier"`` releases through a ``threading.Barrier`` as before issue
    10 (kept for ``benchmarks/stampede_collision.py``'s "before" rows).
    """
    stop = stop or threading.Event()
    n = plan.workers
    per_worker: dict[int, list[PlannedOp]] = {w: [] for w in range(n)}
    for planned in plan.ops:
        per_worker[planned.worker].append(planned)
    # The bound on the run starts when the barrier releases the workers; until then
    # it covers the wait for every thread to arrive.
    deadline = time.monotonic() + barrier_timeout_s + run_timeout_s

    released_ns = 0

    def release() -> None:
        nonlocal deadline, released_ns
        released_ns = time.monotonic_ns()
        deadline = time.monotonic() + run_timeout_s

    gate = _Gate(n) if release_by == "gate" else _BarrierGate(n, barrier_timeout_s)
    first_invoke: dict[int, int] = {}
    not_started: list[PlannedOp] = []
    cut_by_bound: list[int] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    ops_run = 0

    # Clients that can (HTTP) connect, warm up and encode the worker's requests on its
    # own thread before the barrier, so the release is followed by sends, not set-up.
    ready: Callable[[list[Op]], None] | None = getattr(client, "ready", None)
    release_client: Callable[[], None] | None = getattr(client, "release", None)

    def work(worker: int) -> None:
        try:
            run_worker(worker)
        finally:
            if release_client is not None:
                release_client()

    def run_worker(worker: int) -> None:
        nonlocal ops_run
        mine = per_worker[worker]
        if ready is not None:
            # Preparation only: a client that fails here meets the same trouble in its
            # ops, which record it. The worker must still arrive at the gate.
            with contextlib.suppress(Exception):
                ready([p.to_op() for p in mine])
        if not gate.wait(worker, barrier_timeout_s + 5.0):
            with lock:
                errors.append(RunnerError("the gate never opened: a worker did not arrive"))
                not_started.extend(mine)
            return
        for i, planned in enumerate(mine):
            if stop.is_set() or time.monotonic() >= deadline:
                with lock:
                    not_started.extend(mine[i:])
                    if not stop.is_set():
                        cut_by_bound.append(worker)
                return
            op = client.invoke(planned.to_op(_label(phase)), history)
            with lock:
                ops_run += 1
                first_invoke.setdefault(worker, op.invoke_ns)

    threads = [
        threading.Thread(target=work, args=(w,), name=f"worker-{w}", daemon=True) for w in range(n)
    ]
    started = time.monotonic()
    last_started_ns = 0
    for t in threads:
        # Taken before each start: the gate cannot open before the last one arrived.
        last_started_ns = time.monotonic_ns()
        t.start()
    if gate.all_arrived(barrier_timeout_s):
        release()
        gate.open()
    else:
        gate.break_open()
    for t in threads:
        while t.is_alive() and time.monotonic() < deadline:
            t.join(min(0.1, max(0.0, deadline - time.monotonic())))
    # Read before the bound's own stop below: the caller's stop is not the bound.
    stopped = stop.is_set()
    timed_out = any(t.is_alive() for t in threads)
    if timed_out:
        stop.set()
        grace = op_timeout_s + 5.0
        end = time.monotonic() + grace
        for t in threads:
            t.join(max(0.0, end - time.monotonic()))
    left = [t.name for t in threads if t.is_alive()]
    if left:
        raise RunnerError(f"{len(left)} worker(s) still running after the bound: {left[:5]}")
    # From the release (not from spawning threads, which takes ~20 ms per 500) to the
    # last join: the time the load itself took.
    end_ns = time.monotonic_ns()
    wall = (end_ns - released_ns) / 1e9 if released_ns else time.monotonic() - started
    if errors and not first_invoke:
        raise RunnerError(f"the workers were never released: {errors[0]!r}")

    cut = time.monotonic_ns()
    for planned in not_started:
        op = planned.to_op(_label(phase))
        op.invoke_ns = op.complete_ns = cut
        op.result = "unknown"
        op.message = NOT_STARTED
        history.append(op)

    spread = None
    if first_invoke:
        spread = (max(first_invoke.values()) - min(first_invoke.values())) / 1e6
    return RunReport(
        workers=n,
        ops_planned=len(plan.ops),
        ops_run=ops_run,
        not_started=len(not_started),
        wall_s=wall,
        start_spread_ms=spread,
        timed_out=timed_out or bool(cut_by_bound) or (bool(not_started) and not stopped),
        stopped=stopped,
        first_invoke_ns=dict(first_invoke),
        released_ns=released_ns,
        last_started_ns=last_started_ns,
    )


def run_ops(
    ops: list[Op],
    client: Client,
    history: History,
) -> list[Op]:
    """Run a few operations one after another on the calling thread (setup, probes)."""
    return [client.invoke(op, history) for op in ops]
