"""connection_drop: the service's database backends are killed again and again under load."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, Shared, results_within
from experiments.faults.backends import BackendKiller, SlowAfterInsert
from experiments.faults.loads import FAULT_COMMON, claim_stream_plan
from experiments.faults.recovery import SERVES_AGAIN_S, claims_recovered
from experiments.history import History
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.result import Result, Verdict
from experiments.scenarios._shapes import WORKERS
from experiments.spec import Range, RunSpec

NAME = "connection_drop"
TITLE = "Connection drop"
DESCRIPTION = (
    "8 workers claim (pausing 10 ms after each op) on 4 coupons while the service's backends are terminated every "
    "~0.25 s (4 rounds), some mid-transaction (claims linger 5 ms after their insert). "
    "Expected: every op ok or a clean unavailable; no partial claim (conservation: no "
    "claim row without its decrement or the reverse); every acknowledged claim stored; "
    "every planned round killed backends; claims succeed again within 2 s of the last kill."
)
DEFAULTS: dict[str, Any] = {"kills": 4, "interval_s": 0.25, "workers": 8, "linger_s": 0.005}
#: The fault it injects (``coupon-chaos list`` shows it).
FAULT = "pg_terminate_backend on the service's backends, kills rounds about interval_s apart"
#: The values each figure may take.
RANGES: dict[str, Range] = {
    "kills": Range(1, 20, "kill rounds"),
    "interval_s": Range(0.05, 2, "seconds between rounds"),
    "workers": WORKERS,
    "linger_s": Range(0, 0.5, "seconds a claim lingers after its insert"),
}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "faults"
CHECKS: tuple[str, ...] = (
    "claim_results",
    "get_results",
    "backends_killed",
    "service_recovered_in_bound",
)
COMMON: dict[str, Any] = dict(FAULT_COMMON)
#: A worker's pause after each op, and the coupons the load spreads over: the load
#: outlasts the kills on every strategy (4000 ops per worker), yet its history stays
#: one the linearizability check decides within its bound (unpaced on 2 coupons the
#: atomic strategy made ~10,000 ops in-process and the check ran out of time).
PACE_S = 0.01
COUPONS = 4


def run(spec: RunSpec) -> Result:
    kills = int(spec["kills"])
    interval_s = float(spec["interval_s"])
    workers = int(spec["workers"])
    linger_s = float(spec["linger_s"])
    killers: list[BackendKiller] = []
    # A round waits for its backends to exit (pg_terminate_backend's 5 s timeout): the
    # rounds are bounded by the killer's own bound, and the fault phase ends with them.
    bound_s = kills * (interval_s * 2 + 5.0) + 2

    def faults(fr: Run) -> list[Nemesis]:
        fr.lab.service.fault = SlowAfterInsert(linger_s)
        k = BackendKiller(
            fr.database_url,
            fr.application_name,
            interval_s=interval_s,
            jitter_s=interval_s / 3,
            max_kills=kills,
            max_duration_s=bound_s,
            seed=fr.plan.seed,
        )
        killers.append(k)
        return [k]

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        k = killers[-1]
        per_round = list(k.killed_per_round)
        fr.figures["backends_killed"] = len(k.killed)
        fr.figures["killed_in_state"] = dict(k.killed_states)
        fr.figures["kill_rounds"] = k.rounds
        fr.figures["killed_per_round"] = per_round
        busy = k.killed_states.get("idle in transaction", 0) + k.killed_states.get("active", 0)
        ws = k.windows.windows
        return [
            results_within(history, "claim", {"ok", "unavailable"}),
            results_within(history, "get", {"ok", "unavailable"}),
            # The plan's count: every one of its rounds ran and found backends to kill.
            Verdict(
                "backends_killed",
                k.rounds == kills and len(per_round) == kills and all(n > 0 for n in per_round),
                f"{len(k.killed)} backends killed in {k.rounds} of {kills} planned rounds "
                f"(per round {per_round}; {busy} busy)",
                {
                    "killed": len(k.killed),
                    "rounds": k.rounds,
                    "planned": kills,
                    "per_round": per_round,
                    "states": dict(k.killed_states),
                },
            ),
            claims_recovered(
                history, ws[-1].end_ns if ws else None, SERVES_AGAIN_S, what="the last kill"
            ),
        ]

    return run_pipeline(
        spec,
        Workload(
            checks=SHARED,
            make_plan=lambda s, p: claim_stream_plan(
                s, p, coupons=COUPONS, workers=workers, ops_per_worker=4000
            ),
            faults=faults,
            expect=expect,
            fault_s=bound_s,
            faults_done=lambda: bool(killers) and killers[-1].done.is_set(),
            # Longer than the recovery bound: a recovery inside it shows in the load.
            after_s=SERVES_AGAIN_S + 0.5,
            service_overrides={"pool_timeout": 2.0},
            # Paced: each worker pauses after every claim or read, so the op count is
            # bounded by the run's length, not by the strategy's speed.
            backoff_s=PACE_S,
            backoff_on=("ok", "unavailable"),
        ),
    )
