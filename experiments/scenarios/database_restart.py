"""database_restart: the database is stopped and started again while claims run."""

from __future__ import annotations

from typing import Any

from coupon_core.database import ExternalDatabase
from experiments.checks import FinalState, Shared, results_within
from experiments.faults.loads import claim_stream_plan
from experiments.faults.recovery import SERVES_AGAIN_S, claims_recovered
from experiments.faults.restart import DatabaseRestart, restart_skip_reason
from experiments.figures import latency_quantiles
from experiments.history import History
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.result import Result, Verdict
from experiments.scenarios._shapes import WORKERS
from experiments.spec import Range, RunSpec

NAME = "database_restart"
TITLE = "Database restart"
DESCRIPTION = (
    "8 workers claim while the database is stopped (fast shutdown), kept down 1 s and "
    "started again on the same port. Expected: ops during the outage end unavailable, "
    "at once once the circuit breaker has opened (p99 under 1 s, the design's promise), "
    "never hang or 5xx; no acknowledged claim is lost; the service serves claims again "
    "without a restart, within 2 s of the database accepting connections. Measured: "
    "p50/p99 of the refusals during the outage and the time from the database "
    "accepting connections to the first successful claim invoked after it. "
    "Needs a database the lab can restart: it always starts its own (a database_url "
    "given is not used, and the result says so)."
)
DEFAULTS: dict[str, Any] = {"workers": 8, "down_s": 1.0, "mode": "fast"}
#: The fault it injects (``coupon-chaos list`` shows it).
FAULT = (
    "the database process stopped (fast or smart shutdown), kept down down_s, started on its port"
)
#: The values each figure may take.
RANGES: dict[str, Range] = {
    "workers": WORKERS,
    "down_s": Range(0.1, 20, "seconds down; within the run bound (40 s)"),
}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "faults"
CHECKS: tuple[str, ...] = (
    "claim_results",
    "get_results",
    "outage_observed",
    "service_recovered_in_bound",
    "ops_bounded",
    "outage_answers_fast",
)
#: The design's promises (DESIGN.md, "Outages"), each the bound of its check and
#: reported MET/MISSED beside the figures: refusals during the outage p99 under 1 s, and
#: the service serving within about 2 s of the database accepting connections again.
GOAL_OUTAGE_P99_S = 1.0
GOAL_RECOVERY_S = SERVES_AGAIN_S
#: A worker told "unavailable" pauses this long before its next op (see
#: ``loads.BackingOff``); at 10 ms, 800 refusals made the linearizability search the
#: longest step of the notebook. It also bounds how late a recovery is seen.
BACKOFF_S = 0.05


COMMON: dict[str, Any] = {"op_timeout_s": 5.0, "run_timeout_s": 40.0}


def run(spec: RunSpec) -> Result:
    workers = int(spec["workers"])
    down_s = float(spec["down_s"])
    mode = spec["mode"]
    restarts: list[DatabaseRestart] = []

    def faults(fr: Run) -> list[Nemesis]:
        handle = fr.lab.database
        if handle is None or restart_skip_reason(handle) is not None:
            raise RuntimeError("unreachable: checked before the run")
        r = DatabaseRestart(handle, delay_s=0.3, down_s=down_s, mode=mode)
        restarts.append(r)
        return [r]

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        r = restarts[-1]
        ws = r.windows.windows
        start = ws[-1].start_ns if ws else None
        # The window ends once start() returned: pg_ctl -w saw the server accept
        # connections and one connection of our own succeeded.
        end = ws[-1].end_ns if ws else None
        load = [o for o in history.ops if o.phase not in (None, "setup")]
        # Recovery: from the database accepting connections to the first successful
        # claim invoked after it.
        recovered = claims_recovered(history, end, GOAL_RECOVERY_S, what="the database was back")
        recover = recovered.figures["recovery_s"]
        # The refusals during the outage: unavailable ops invoked while it was down.
        refused = [
            o
            for o in load
            if o.result == "unavailable"
            and start is not None
            and end is not None
            and start <= o.invoke_ns < end
        ]
        refusals = latency_quantiles(refused)
        p99 = refusals["p99_ms"]
        pool_timeout_s = fr.lab.service.config.pool_timeout
        fr.figures.update(
            {
                "db_stop_s": None if r.stopped_s is None else round(r.stopped_s, 4),
                "db_start_s": None if r.started_s is None else round(r.started_s, 4),
                "service_recovery_s": None if recover is None else round(recover, 4),
                "outage_refusals": len(refused),
                "outage_refusal_ms": refusals,
                "pool_timeout_s": pool_timeout_s,
                "goals": {
                    f"outage p99 < {GOAL_OUTAGE_P99_S:g} s": _goal(
                        None if p99 is None else p99 / 1000, GOAL_OUTAGE_P99_S
                    ),
                    f"recovery < {GOAL_RECOVERY_S:g} s": _goal(recover, GOAL_RECOVERY_S),
                },
            }
        )
        bound_ns = int((spec.op_timeout_s + 2.0) * 1e9)
        slow = [o.op_id for o in load if o.latency_ns > bound_ns]
        # The design's promise: while the database is down every request answers 503 at
        # once, p99 under 1 s (without the breaker each refusal waits the pool timeout).
        fast_bound_s = GOAL_OUTAGE_P99_S
        return [
            results_within(history, "claim", {"ok", "unavailable"}),
            results_within(history, "get", {"ok", "unavailable"}),
            Verdict(
                "outage_observed",
                any(o.result == "unavailable" for o in load),
                f"{sum(1 for o in load if o.result == 'unavailable')} ops refused during the outage",
            ),
            recovered,
            Verdict("ops_bounded", not slow, f"{len(slow)} ops took longer than op timeout + 2 s"),
            Verdict(
                "outage_answers_fast",
                p99 is not None and p99 / 1000 < fast_bound_s,
                f"{len(refused)} refusals during the outage: p50 {refusals['p50_ms']} ms, "
                f"p99 {p99} ms (bound: the design's p99 under {fast_bound_s:g} s)",
                {**refusals, "n": len(refused), "bound_s": fast_bound_s},
            ),
        ]

    note = None
    if spec.database_url is not None:
        # A database given by URL is not the lab's to stop. The scenario runs, every
        # check with it, on a cluster of its own, and says so (never a silent skip).
        note = f"ran on a cluster of its own: {restart_skip_reason(ExternalDatabase(spec.database_url))}"
        print(f"[{NAME}] {note}", flush=True)
    result = run_pipeline(
        spec,
        Workload(
            checks=SHARED,
            make_plan=lambda s, p: claim_stream_plan(s, p, workers=workers, ops_per_worker=3000),
            faults=faults,
            expect=expect,
            fault_s=spec.run_timeout_s / 2,
            after_s=1.0,
            # The lab's pool timeout (5 s with the default op timeout): the circuit breaker,
            # not a short timeout, is what makes refusals fast.
            faults_done=lambda: bool(restarts) and restarts[-1].wait(0),
            database="own",
            backoff_s=BACKOFF_S,
        ),
    )
    if note is not None:
        result.summary["database"] = note
    return result


def _goal(value: float | None, goal: float) -> str:
    if value is None:
        return "not measured"
    return f"{'MET' if value < goal else 'MISSED'} ({value:.3f} s)"
