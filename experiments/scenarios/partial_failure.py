"""partial_failure: claims fail between their insert and their stock decrement."""

from __future__ import annotations

from typing import Any

from experiments.checks import FinalState, Shared, results_within
from experiments.faults.loads import FAULT_COMMON, claim_stream_plan
from experiments.faults.partial import FailAfterInsert, after_insert_absent
from experiments.faults.window import Windows
from experiments.history import History
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.result import Result, Verdict
from experiments.scenarios._shapes import WORKERS
from experiments.spec import Range, RunSpec

NAME = "partial_failure"
TITLE = "Failure between insert and decrement"
DESCRIPTION = (
    "A seeded 30% of claims raise a connection-like error after inserting the claim row "
    "and before decrementing stock. Expected: each such claim is unavailable and rolled "
    "back entirely (claim rows equal successful claims exactly, stock = amount - rows); "
    "for the one-statement 'atomic' strategy the point does not exist and is never reached."
)
DEFAULTS: dict[str, Any] = {"rate": 0.3, "workers": 6, "claims_per_worker": 40}
#: The values each figure may take.
RANGES: dict[str, Range] = {
    "rate": Range(0.01, 1, "the share of claims failed at the point"),
    "workers": WORKERS,
    "claims_per_worker": Range(1, 10_000),
}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "faults"
CHECKS: tuple[str, ...] = (
    "claim_results",
    "no_partial_claim",
    "failures_are_the_injected_ones",
    "fault_injected",
)

#: The fault it injects (``coupon-chaos list`` shows it).
FAULT = "an error raised between a claim's insert and its stock decrement, in a seeded share"


def _skip_reason(strategy: str, absent: str) -> str:
    return f"{strategy} claims never reach the after_insert point ({absent})"


def SKIPS(spec: RunSpec) -> dict[str, str]:
    """The checks a run of ``spec`` skips, and why: the fault check, under a strategy
    whose claims have no point between insert and decrement."""
    absent = after_insert_absent(spec.strategy)
    return {} if absent is None else {"fault_injected": _skip_reason(spec.strategy, absent)}


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
        absent = after_insert_absent(spec.strategy)
        if absent is not None and hook.reached == 0:
            # The fault cannot happen under this strategy (declared in faults.partial):
            # skipped with the reason, never passed, as ``list --strategy`` shows.
            verdicts.append(Verdict.skip("fault_injected", _skip_reason(spec.strategy, absent)))
        else:
            # A strategy declared to reach the point must reach it and be failed there;
            # one declared not to that reaches it anyway contradicts its declaration.
            verdicts.append(
                Verdict(
                    "fault_injected",
                    absent is None and hook.failed > 0,
                    f"{hook.failed} of {hook.reached} claims failed after their insert"
                    + (f" (declared without the point: {absent})" if absent else ""),
                    {"reached": hook.reached, "failed": hook.failed},
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
