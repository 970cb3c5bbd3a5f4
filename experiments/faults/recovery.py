"""Recovery judged on the operations the service promises: claims succeed again after a fault.

``recovered`` (the shared check) asks the service's health (``SELECT 1``); a service
that answers its health check and refuses every claim is not recovered. This check
reads the history instead: the first claim invoked after the fault ended that
succeeded, and how long after the end it completed.
"""

from __future__ import annotations

from experiments.history import History
from experiments.result import Verdict

__all__ = ["RECOVERY_NAME", "SERVES_AGAIN_S", "claims_recovered"]

RECOVERY_NAME = "service_recovered_in_bound"
#: The design's promise: once the database is reachable again, the service serves
#: within about 2 s without a restart (DESIGN.md, "Outages").
SERVES_AGAIN_S = 2.0


def claims_recovered(
    history: History, end_ns: int | None, bound_s: float, *, what: str = "the fault ended"
) -> Verdict:
    """``service_recovered_in_bound``: a claim invoked after ``end_ns`` succeeded, and
    completed within ``bound_s`` of it. None for ``end_ns``: the fault never ended
    (or never began), which is no recovery either."""
    if end_ns is None:
        return Verdict(
            RECOVERY_NAME,
            False,
            f"no fault end to recover from ({what}: never)",
            {"bound_s": bound_s},
        )
    after = [
        o for o in history.ops if o.phase != "setup" and o.kind == "claim" and o.invoke_ns >= end_ns
    ]
    oks = sorted(o.complete_ns for o in after if o.result == "ok")
    recover = None if not oks else (oks[0] - end_ns) / 1e9
    outcomes: dict[str, int] = {}
    for o in after:
        outcomes[o.result] = outcomes.get(o.result, 0) + 1
    figures = {
        "recovery_s": None if recover is None else round(recover, 4),
        "bound_s": bound_s,
        "claims_after": dict(sorted(outcomes.items())),
    }
    if recover is None:
        return Verdict(
            RECOVERY_NAME,
            False,
            f"no claim invoked after {what} succeeded ({len(after)} claims after it: {figures['claims_after']})",
            figures,
        )
    return Verdict(
        RECOVERY_NAME,
        recover <= bound_s,
        f"first successful claim {recover:.3f}s after {what} (bound {bound_s:g} s)",
        figures,
    )
