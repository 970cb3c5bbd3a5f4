"""connection_drop: the service's database backends are killed again and again under load."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, Shared, results_within
from experiments.faults.backends import BackendKiller, SlowAfterInsert
from experiments.faults.loads import claim_stream_plan
from experiments.history import History
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.result import Result, Verdict
from experiments.spec import RunSpec

NAME = "connection_drop"
TITLE = "Connection drop"
DESCRIPTION = (
    "8 workers claim on 2 coupons while the service's backends are terminated every "
    "~0.25 s (4 rounds), some mid-transaction (claims linger 5 ms after their insert). "
    "Expected: every op ok or a clean unavailable; no partial claim (conservation: no "
    "claim row without its decrement or the reverse); every acknowledged claim stored; "
    "the service serves again after the last kill."
)
DEFAULTS: dict[str, Any] = {"kills": 4, "interval_s": 0.25, "workers": 8, "linger_s": 0.005}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "faults"
CHECKS: tuple[str, ...] = (
    "claim_results",
    "get_results",
    "backends_killed",
)


COMMON: dict[str, Any] = {"op_timeout_s": 5.0, "run_timeout_s": 30.0}


def run(spec: RunSpec) -> Result:
    kills = int(spec["kills"])
    interval_s = float(spec["interval_s"])
    workers = int(spec["workers"])
    linger_s = float(spec["linger_s"])
    killers: list[BackendKiller] = []

    def faults(fr: Run) -> list[Nemesis]:
        fr.lab.service.fault = SlowAfterInsert(linger_s)
        k = BackendKiller(
            fr.database_url,
            fr.application_name,
            interval_s=interval_s,
            jitter_s=interval_s / 3,
            max_kills=kills,
            max_duration_s=kills * interval_s * 2 + 2,
            seed=fr.plan.seed,
        )
        killers.append(k)
        return [k]

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        k = killers[0]
        fr.figures["backends_killed"] = len(k.killed)
        fr.figures["killed_in_state"] = dict(k.killed_states)
        fr.figures["kill_rounds"] = k.rounds
        return [
            results_within(history, "claim", {"ok", "unavailable"}),
            results_within(history, "get", {"ok", "unavailable"}),
            Verdict(
                "backends_killed",
                len(k.killed) > 0,
                f"{len(k.killed)} backends killed in {k.rounds} rounds "
                f"({k.killed_states.get('idle in transaction', 0) + k.killed_states.get('active', 0)} busy)",
                {"killed": len(k.killed), "states": dict(k.killed_states)},
            ),
        ]

    return run_pipeline(
        spec,
        Workload(
            checks=SHARED,
            make_plan=lambda s, p: claim_stream_plan(s, p, workers=workers, ops_per_worker=400),
            faults=faults,
            expect=expect,
            fault_s=kills * interval_s * 2 + 1,
            after_s=0.5,
            service_overrides={"pool_timeout": 2.0},
        ),
    )
