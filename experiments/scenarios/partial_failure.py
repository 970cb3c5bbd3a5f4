"""partial_failure: claims fail between their insert and their stock decrement."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, Shared, results_within
from experiments.faults.loads import FAULT_COMMON, claim_stream_plan
from experiments.faults.partial import FailAfterInsert
from experiments.faults.window import Windows
from experiments.history import History
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.result import Result, Verdict
from experiments.spec import RunSpec

NAME = "partial_failure"
TITLE = "Failure between insert and decrement"
DESCRIPTION = (
    "A seeded 30% of claims raise a connection-like error after inserting the claim row "
    "and before decrementing stock. Expected: each such claim is unavailable and rolled "
    "back entirely (claim rows equal successful claims exactly, stock = amount - rows); "
    "for the one-statement 'atomic' strategy the point does not exist and is never reached."
)
DEFAULTS: dict[str, Any] = {"rate": 0.3, "workers": 6, "claims_per_worker": 40}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "faults"
CHECKS: tuple[str, ...] = (
    "claim_results",
    "no_partial_claim",
    "failures_are_the_injected_ones",
    "fault_injected",
)


class _HookFault:
    """The hook as a nemesis: on from start() to stop(), one window ``failing``."""

    def __init__(self, fr: Run, hook: FailAfterInsert) -> None:
        self.fr, self.hook = fr, hook
        self.windows = Windows("after_insert_failure")

    def start(self) -> object:
        self.fr.lab.service.fault = self.hook
        self.windows.open("failing")
        return self

    def stop(self) -> None:
        self.fr.lab.service.fault = None
        self.windows.close("failing")


COMMON: dict[str, Any] = dict(FAULT_COMMON)


def run(spec: RunSpec) -> Result:
    rate = float(spec["rate"])
    workers = int(spec["workers"])
    claims_per_worker = int(spec["claims_per_worker"])
    hooks: list[FailAfterInsert] = []

    def faults(fr: Run) -> list[Nemesis]:
        hook = FailAfterInsert(rate=rate, seed=fr.plan.seed)
        hooks.append(hook)
        return [_HookFault(fr, hook)]

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        hook = hooks[-1]
        claims = [o for o in history.ops if o.kind == "claim" and o.phase not in (None, "setup")]
        ok = sum(1 for o in claims if o.result == "ok")
        unavailable = sum(1 for o in claims if o.result == "unavailable")
        rows = state.claim_rows()
        fr.figures.update({"hook_reached": hook.reached, "injected": hook.failed})
        verdicts = [
            results_within(history, "claim", {"ok", "unavailable"}),
            Verdict(
                "no_partial_claim",
                rows == ok,
                f"{rows} claim rows for {ok} successful claims ({hook.failed} failed after insert)",
                {"rows": rows, "ok": ok, "injected": hook.failed},
            ),
            Verdict(
                "failures_are_the_injected_ones",
                unavailable == hook.failed,
                f"{unavailable} claims unavailable, {hook.failed} failures injected",
                {"unavailable": unavailable},
            ),
        ]
        if hook.reached == 0:
            # The strategy has no point between its insert and its decrement (atomic's
            # one statement): the fault cannot happen, and a check of it would prove
            # nothing. Skipped with the reason, never passed.
            verdicts.append(
                Verdict.skip(
                    "fault_injected",
                    f"{spec.strategy} claims never reached the after_insert point"
                    " (no statement boundary between insert and decrement to fail at)",
                )
            )
        else:
            verdicts.append(
                Verdict(
                    "fault_injected",
                    hook.failed > 0,
                    f"{hook.failed} of {hook.reached} claims failed after their insert",
                )
            )
        return verdicts

    return run_pipeline(
        spec,
        Workload(
            checks=SHARED,
            make_plan=lambda s, p: claim_stream_plan(
                s, p, workers=workers, ops_per_worker=claims_per_worker, get_ratio=0.0
            ),
            faults=faults,
            expect=expect,
            fault_s=spec.run_timeout_s,
            after_s=0.0,
        ),
    )
