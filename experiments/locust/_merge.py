"""Per-worker histories from Locust workers, merged onto the master's clock.

Each worker records its ops on its own clock. ``merge`` places them on the master's
clock by the worker's estimated offset. The check reads them ``corrected`` (offset
placed, not widened) with ``process_clocks``: each worker process's uncertainty, by
which the check widens ops between processes only (no real-time order is claimed
that the clocks cannot vouch for: a correct system is never judged wrong for a clock
skew), while ops of one process keep their own order exactly (one clock), and past
a bound the verdict is unknown (``check_linearizable(clocks=...)``). A planned op its
worker never reported (the worker died, or the run's bound passed) becomes
``unknown`` over the whole run: it may or may not have happened.

    corrected  offset corrected, not widened (the check's input, with process_clocks)
    widened    every op widened by its worker's uncertainty, one interval each: the
               old input, kept for comparison (it erases a process's own order)
    raw        each worker's clock taken at face value
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from experiments.history import History, Op
from experiments.locust._clocks import ClockEstimate, Sample, combine, estimate
from experiments.plans import Plan, PlannedOp

__all__ = [
    "LOST",
    "PLACEMENTS",
    "UNREPORTED",
    "Placement",
    "WorkerReport",
    "merge",
    "peak_overlap",
    "phase_of",
    "process_clocks",
    "start_spread_ms",
]

Placement = Literal["widened", "corrected", "raw"]
PLACEMENTS: tuple[Placement, ...] = ("corrected", "widened", "raw")

LOST = "worker lost: outcome unknown"
UNREPORTED = "never reported by its worker: outcome unknown"


@dataclass
class WorkerReport:
    """What one Locust worker gave back: its ops on its own clock, and its clock round trips."""

    index: int
    node_id: str
    users: int
    plan_workers: list[int]
    ops: list[Op] = field(default_factory=list)
    sync_before: list[Sample] = field(default_factory=list)
    sync_after: list[Sample] = field(default_factory=list)
    done: bool = False
    lost: bool = False

    def clock(self) -> ClockEstimate | None:
        """The run's offset estimate (before and after combined), None without any round trip."""
        if not self.sync_before:
            return None
        before = estimate(self.sync_before)
        after = estimate(self.sync_after) if self.sync_after else None
        return combine(before, after)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkerReport:
        return cls(
            index=int(data["index"]),
            node_id=str(data["node_id"]),
            users=int(data["users"]),
            plan_workers=[int(w) for w in data["plan_workers"]],
            ops=[Op(**o) for o in data.get("ops", [])],
            sync_before=[(int(a), int(b), int(c)) for a, b, c in data.get("sync_before", [])],
            sync_after=[(int(a), int(b), int(c)) for a, b, c in data.get("sync_after", [])],
            done=bool(data.get("done")),
            lost=bool(data.get("lost")),
        )


def phase_of(index: int) -> str:
    """The phase the ops of Locust worker ``index`` carry: its process, one clock."""
    return f"locust-{index}"


def process_clocks(reports: Iterable[WorkerReport]) -> dict[str, int | None]:
    """Each worker process's clock uncertainty (ns) on the master's clock, by its phase.

    The half round trip of its best clock sample before the run, widened by half the
    difference to the estimate after it (``_clocks.combine``); None for a worker with
    no round trip (its offset is not known at all).
    """
    out: dict[str, int | None] = {}
    for report in reports:
        clock = report.clock()
        out[phase_of(report.index)] = None if clock is None else clock.uncertainty_ns
    return out


def _placed(op: Op, clock: ClockEstimate | None, placement: Placement, phase: str) -> Op:
    invoke, complete = op.invoke_ns, op.complete_ns
    if clock is not None and placement != "raw":
        invoke, complete = clock.to_master(invoke), clock.to_master(complete)
        if placement == "widened":
            invoke -= clock.uncertainty_ns
            complete += clock.uncertainty_ns
    return Op(
        op_id=op.op_id,
        worker=op.worker,
        kind=op.kind,
        coupon=op.coupon,
        user=op.user,
        amount=op.amount,
        invoke_ns=invoke,
        complete_ns=complete,
        result=op.result,
        http_status=op.http_status,
        message=op.message,
        value=op.value,
        phase=phase,
    )


def merge(
    reports: Sequence[WorkerReport],
    plan: Plan,
    *,
    window: tuple[int, int],
    history: History | None = None,
    placement: Placement = "corrected",
    unassigned: Iterable[int] = (),
) -> History:
    """Every planned op once, on the master's clock, appended to ``history`` (or a new one).

    ``window`` is the run on the master's clock (the agreed start, the end of the
    collection): an op never reported is ``unknown`` over all of it (``widened``: and
    by its worker's uncertainty). Ops carry the phase ``phase_of(worker index)``.
    ``unassigned`` plan workers (no Locust user held them) ran nothing: their ops
    are left out, and the caller reports them.
    """
    out = history if history is not None else History()
    by_plan_worker: dict[int, list[PlannedOp]] = {}
    for planned in plan.ops:
        by_plan_worker.setdefault(planned.worker, []).append(planned)
    skipped = set(unassigned)
    for report in reports:
        clock = report.clock()
        phase = phase_of(report.index)
        seen: set[int] = set()
        for op in report.ops:
            if op.op_id in seen:
                continue
            seen.add(op.op_id)
            out.append(_placed(op, clock, placement, phase))
        widen = clock.uncertainty_ns if clock is not None and placement == "widened" else 0
        for w in report.plan_workers:
            if w in skipped:
                continue
            for planned in by_plan_worker.get(w, []):
                if planned.op_id in seen:
                    continue
                op = planned.to_op(phase)
                op.invoke_ns = window[0] - widen
                op.complete_ns = window[1] + widen
                op.result = "unknown"
                op.message = LOST if report.lost else UNREPORTED
                out.append(op)
    return out


def peak_overlap(ops: Iterable[Op]) -> int:
    """The most ops in flight at one instant (intervals as given; ends before starts at a tie)."""
    edges: list[tuple[int, int]] = []
    for op in ops:
        edges.append((op.invoke_ns, 1))
        edges.append((op.complete_ns, -1))
    edges.sort(key=lambda e: (e[0], e[1]))
    peak = now = 0
    for _, step in edges:
        now += step
        peak = max(peak, now)
    return peak


def start_spread_ms(ops: Iterable[Op]) -> float | None:
    """max - min of each plan worker's first invoke, in ms (None without ops)."""
    first: dict[int, int] = {}
    for op in ops:
        if op.message in (LOST, UNREPORTED):
            continue
        first[op.worker] = min(first.get(op.worker, op.invoke_ns), op.invoke_ns)
    if not first:
        return None
    return (max(first.values()) - min(first.values())) / 1e6
