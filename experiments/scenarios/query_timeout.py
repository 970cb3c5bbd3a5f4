"""query_timeout: a held row lock against a service with a statement timeout."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, Shared
from experiments.faults.loads import FAULT_COMMON, claim_stream_plan
from experiments.faults.locks import RowLockHolder, SlowQuery, held_lock_verdicts
from experiments.history import History
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.result import Result, Verdict
from experiments.scenarios._shapes import WORKERS
from experiments.spec import Range, RunSpec

NAME = "query_timeout"
TITLE = "Query timeout"
DESCRIPTION = (
    "The hot coupon's row is locked by another session for 1 s while 10 workers claim "
    "it through a service with statement_timeout 300 ms. Expected: claims in the lock "
    "window end unavailable ('timed out') within the timeout plus slack, none succeeds "
    "while the lock is held, all succeed after; a pg_sleep past the timeout on a service connection is cancelled."
)
DEFAULTS: dict[str, Any] = {"workers": 10, "statement_timeout_ms": 300, "hold_s": 1.0}
#: The fault it injects (``coupon-chaos list`` shows it).
FAULT = "the hot coupon's row locked by another session for hold_s, under the service's statement_timeout"
#: The values each figure may take.
RANGES: dict[str, Range] = {
    "workers": WORKERS,
    "statement_timeout_ms": Range(10, 4000, "milliseconds; under the op bound (5 s)"),
    "hold_s": Range(0.1, 20, "seconds; within the run bound (30 s)"),
}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "faults"
CHECKS: tuple[str, ...] = (
    "claim_results",
    "lock_taken",
    "timeouts_observed",
    "no_success_while_locked",
    "timeouts_bounded",
    "slow_query_cancelled",
)


COMMON: dict[str, Any] = dict(FAULT_COMMON)


def run(spec: RunSpec) -> Result:
    workers = int(spec["workers"])
    statement_timeout_ms = int(spec["statement_timeout_ms"])
    hold_s = float(spec["hold_s"])
    holders: list[RowLockHolder] = []

    def faults(fr: Run) -> list[Nemesis]:
        # On a connection of the service's own pool: its statement timeout must cancel
        # the sleep (a session of ours with the same option would prove only PostgreSQL).
        sleep_s = 5 * statement_timeout_ms / 1000
        took, err = SlowQuery.on_pool(fr.lab.service.pool, sleep_s)
        fr.figures["slow_query"] = {"took_s": round(took, 4), "error": err, "sleep_s": sleep_s}
        fr.verdicts.append(
            Verdict(
                "slow_query_cancelled",
                err == "QueryCanceled" and took < sleep_s,
                f"pg_sleep({sleep_s:g}) on a service connection ended {err or 'uncancelled'}"
                f" after {took:.3f}s (statement timeout {statement_timeout_ms} ms)",
                {"took_s": took, "error": err, "sleep_s": sleep_s},
            )
        )
        h = RowLockHolder(fr.database_url, fr.plan.setup[0][0], hold_s=hold_s)
        holders.append(h)
        return [h]

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        claims, _, verdicts = held_lock_verdicts(history, holders[-1])
        bound_ns = int((statement_timeout_ms / 1000 + 1.0) * 1e9)
        timed_out = [o for o in claims if o.result == "unavailable"]
        slow = [o.op_id for o in timed_out if o.latency_ns > bound_ns]
        return [
            *verdicts,
            Verdict(
                "timeouts_observed",
                len(timed_out) > 0,
                f"{len(timed_out)} claims timed out behind the lock",
                {"timed_out": len(timed_out)},
            ),
            Verdict(
                "timeouts_bounded",
                not slow,
                f"{len(slow)} timed-out claims took longer than the timeout + 1 s",
                {"slow": slow[:20]},
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
            after_s=0.5,
            service_overrides={"statement_timeout_ms": statement_timeout_ms},
        ),
    )
