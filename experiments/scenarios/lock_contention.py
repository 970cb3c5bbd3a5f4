"""lock_contention: a hot coupon's row held by another session; some waiters cancelled mid-wait."""

from __future__ import annotations

import threading
import time
from typing import Any

from experiments.checks import FinalState, Shared
from experiments.faults.cancel import cancel_backends
from experiments.faults.loads import FAULT_COMMON, claim_stream_plan
from experiments.faults.locks import RowLockHolder, held_lock_verdicts
from experiments.faults.threaded import ThreadedFault
from experiments.faults.window import Windows
from experiments.history import History
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.result import Result, Verdict
from experiments.scenarios._shapes import WORKERS
from experiments.spec import Range, RunSpec, SpecError

NAME = "lock_contention"
TITLE = "Lock contention and lock-wait cancellation"
DESCRIPTION = (
    "12 workers claim one hot coupon while another session holds its row lock for 1.2 s; "
    "0.5 s in (or as soon after as one waits), the claims waiting on the lock are cancelled "
    "(pg_cancel_backend). Expected: "
    "the cancelled claims end unavailable and leave no row; the others wait and succeed "
    "once the lock is released; no claim succeeds while the lock is held; stock conserved."
)
DEFAULTS: dict[str, Any] = {"workers": 12, "hold_s": 1.2, "cancel_after_s": 0.5}
#: The fault it injects (``coupon-chaos list`` shows it).
FAULT = (
    "another session holds the hot coupon's row lock for hold_s; pg_cancel_backend"
    " on the claims waiting on it, cancel_after_s in"
)
#: The values each figure may take.
RANGES: dict[str, Range] = {
    "workers": WORKERS,
    "hold_s": Range(0.2, 20, "seconds; within the run bound (30 s)"),
    "cancel_after_s": Range(0.05, 20, "seconds into the hold (must be under hold_s)"),
}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "faults"
CHECKS: tuple[str, ...] = (
    "claim_results",
    "lock_taken",
    "waiters_cancelled",
    "no_success_while_locked",
    "waiters_succeed_after_release",
)


class _CancelOnce(ThreadedFault):
    """``delay_s`` in, cancel the service's statements waiting on a lock, once.

    Once there is one to cancel: on a loaded machine (or over HTTP) the claims may not
    wait on the lock yet at ``delay_s``, and a cancel of nothing is a fault that did
    not happen. It looks again every 20 ms until it has cancelled one, or until
    ``give_up_s`` from its start (before the lock is released: then there is nothing
    left to cancel, and ``waiters_cancelled`` fails).
    """

    THREAD = "nemesis-cancel-once"

    def __init__(self, fr: Run, delay_s: float, give_up_s: float) -> None:
        self.fr, self.delay_s, self.give_up_s = fr, delay_s, give_up_s
        self.windows = Windows("lock_wait_cancel")
        self.cancelled: list[int] = []
        self.looks = 0
        self._stop = threading.Event()
        self._thread = None

    def _join_s(self) -> float:
        return 10.0

    def _run(self) -> None:
        end = time.monotonic() + self.give_up_s
        if self._stop.wait(self.delay_s):
            return
        with self.windows.active("cancel"):
            while True:
                self.looks += 1
                self.cancelled = cancel_backends(
                    self.fr.database_url, self.fr.application_name, waiting_only=True
                )
                if self.cancelled or time.monotonic() >= end or self._stop.wait(0.02):
                    return


COMMON: dict[str, Any] = dict(FAULT_COMMON)


def run(spec: RunSpec) -> Result:
    workers = int(spec["workers"])
    hold_s = float(spec["hold_s"])
    cancel_after_s = float(spec["cancel_after_s"])
    if cancel_after_s >= hold_s:
        raise SpecError(
            f"cancel_after_s={cancel_after_s} must be under hold_s={hold_s}:"
            " the cancel is of claims waiting on the held lock"
        )
    parts: dict[str, Any] = {}

    def faults(fr: Run) -> list[Nemesis]:
        holder = RowLockHolder(fr.database_url, fr.plan.setup[0][0], hold_s=hold_s)
        canceller = _CancelOnce(fr, cancel_after_s, give_up_s=hold_s - 0.1)
        parts.update(holder=holder, canceller=canceller, t0=time.monotonic())
        return [holder, canceller]

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        holder: RowLockHolder = parts["holder"]
        canceller: _CancelOnce = parts["canceller"]
        claims, held, verdicts = held_lock_verdicts(history, holder)
        unavailable = [o for o in claims if o.result == "unavailable"]
        waited_ok = (
            []
            if held is None
            else [o for o in claims if o.result == "ok" and o.invoke_ns < held.end_ns]
        )
        fr.figures.update(
            {
                "cancelled_waiters": len(canceller.cancelled),
                "waited_then_ok": len(waited_ok),
                "lock_held_s": None if held is None else round(held.duration_s, 4),
            }
        )
        return [
            *verdicts,
            Verdict(
                "waiters_cancelled",
                len(canceller.cancelled) > 0 and len(unavailable) >= len(canceller.cancelled),
                f"{len(canceller.cancelled)} lock waiters cancelled, {len(unavailable)} claims unavailable",
                {"cancelled": len(canceller.cancelled), "unavailable": len(unavailable)},
            ),
            Verdict(
                "waiters_succeed_after_release",
                len(waited_ok) > 0,
                f"{len(waited_ok)} claims that waited on the lock succeeded after it was released",
            ),
        ]

    return run_pipeline(
        spec,
        Workload(
            checks=SHARED,
            make_plan=lambda s, p: claim_stream_plan(
                s, p, coupons=1, workers=workers, ops_per_worker=200, hot=True, get_ratio=0.0
            ),
            faults=faults,
            expect=expect,
            fault_s=hold_s + 0.3,
            after_s=0.4,
        ),
    )
