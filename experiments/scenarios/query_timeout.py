"""query_timeout: a held row lock against a service with a statement timeout."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, Shared, results_within
from experiments.faults.loads import claim_stream_plan
from experiments.faults.locks import RowLockHolder, SlowQuery
from experiments.history import History
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.result import Result, Verdict
from experiments.spec import RunSpec

NAME = "query_timeout"
TITLE = "Query timeout"
DESCRIPTION = (
    "The hot coupon's row is locked by another session for 1 s while 10 workers claim "
    "it through a service with statement_timeout 300 ms. Expected: claims in the lock "
    "window end unavailable ('timed out') within the timeout plus slack, none succeeds "
    "while the lock is held, all succeed after; a pg_sleep past the timeout is cancelled."
)
DEFAULTS: dict[str, Any] = {"workers": 10, "statement_timeout_ms": 300, "hold_s": 1.0}
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


COMMON: dict[str, Any] = {"op_timeout_s": 5.0, "run_timeout_s": 30.0}


def run(spec: RunSpec) -> Result:
    workers = int(spec["workers"])
    statement_timeout_ms = int(spec["statement_timeout_ms"])
    hold_s = float(spec["hold_s"])
    holders: list[RowLockHolder] = []

    def faults(fr: Run) -> list[Nemesis]:
        took, err = SlowQuery(
            fr.database_url,
            sleep_s=5 * statement_timeout_ms / 1000,
            statement_timeout_ms=statement_timeout_ms,
        ).run()
        fr.figures["slow_query"] = {"took_s": round(took, 4), "error": err}
        fr.verdicts.append(
            Verdict(
                "slow_query_cancelled",
                err == "QueryCanceled" and took < 5 * statement_timeout_ms / 1000,
                f"pg_sleep past the timeout ended {err} after {took:.3f}s",
                {"took_s": took},
            )
        )
        h = RowLockHolder(fr.database_url, fr.plan.setup[0][0], hold_s=hold_s)
        holders.append(h)
        return [h]

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        ws = holders[0].windows.windows
        w = ws[0] if ws else None
        bound_ns = int((statement_timeout_ms / 1000 + 1.0) * 1e9)
        claims = [o for o in history.ops if o.kind == "claim" and o.phase not in (None, "setup")]
        timed_out = [o for o in claims if o.result == "unavailable"]
        ok_in_lock = (
            []
            if w is None
            else [
                o.op_id
                for o in claims
                if o.result == "ok" and w.start_ns <= o.invoke_ns and o.complete_ns <= w.end_ns
            ]
        )
        slow = [o.op_id for o in timed_out if o.latency_ns > bound_ns]
        return [
            results_within(history, "claim", {"ok", "unavailable"}),
            Verdict(
                "lock_taken", holders[0].found, f"row lock held {hold_s}s on {fr.plan.setup[0][0]}"
            ),
            Verdict(
                "timeouts_observed",
                len(timed_out) > 0,
                f"{len(timed_out)} claims timed out behind the lock",
                {"timed_out": len(timed_out)},
            ),
            Verdict(
                "no_success_while_locked",
                not ok_in_lock,
                f"{len(ok_in_lock)} claims succeeded while the row was locked",
                {"ops": ok_in_lock[:20]},
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
