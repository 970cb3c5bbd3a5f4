"""Validity checks: they judge the experiment, not the system (``Verdict.validity``)."""

from __future__ import annotations

from experiments.checks._compose import check
from experiments.history import History, collision
from experiments.result import Verdict

__all__ = ["COLLIDED_SHARE", "stampede_collided"]

#: A stampede whose peak in flight is below this share of its workers did not collide.
COLLIDED_SHARE = 0.5


def stampede_collided(
    history: History,
    workers: int,
    *,
    phase: str | None = "load",
    name: str = "stampede_collided",
) -> Verdict:
    """The stampede really collided: at some instant at least half the workers were in flight.

    A validity check (``Verdict.validity``): it judges the experiment, not the system.
    Failing it alone makes the run "no experiment", which the pipeline draws again; it
    never passes a run whose workers ran one after another, nor fails the service.
    """

    @check(name)
    def run() -> Verdict:
        ops = [o for o in history if phase is None or o.phase == phase]
        figures = {**collision(ops, workers), "workers": workers}
        need = COLLIDED_SHARE * workers
        peak = figures["peak_in_flight"]
        shown = (
            f"peak {peak} of {workers} workers in flight at once"
            f" ({figures['peak_in_flight_share']}), overlap with the winner"
            f" {figures['overlap_with_winner']}"
        )
        if peak >= need:
            return Verdict(name, True, f"collided: {shown}", figures, validity=True)
        return Verdict(
            name, False, f"not a stampede: {shown}, need >= {need:g}", figures, validity=True
        )

    verdict = run()
    # A crashed collision check judges the experiment too: unknown, and a validity check.
    verdict.validity = True
    return verdict
