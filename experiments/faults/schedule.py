"""A seeded timetable of proxy phases, run in a thread while a load goes on."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from experiments.faults.proxy import PhaseName, TcpProxy
from experiments.faults.threaded import ThreadedFault
from experiments.faults.window import Windows
from experiments.result import Verdict

__all__ = ["SCHEDULE_NAME", "ProxySchedule", "Step"]

#: The verdict that the timetable ran as planned (``experiments.checks.registry``).
SCHEDULE_NAME = "schedule_ran"


@dataclass(frozen=True)
class Step:
    """Hold ``phase`` (with its parameters) for ``duration_s`` seconds."""

    phase: PhaseName
    duration_s: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProxySchedule(ThreadedFault):
    """Switches ``proxy`` through ``steps`` in order, then back to ``pass``.

    Bounded by the sum of the durations; ``stop()`` ends it early and always leaves
    the proxy in ``pass``. Its windows are the proxy's.

    ``begin_when``: the timetable starts once it holds (polled; at most
    ``begin_within_s``, then it starts anyway and ``begun_on_time`` is False). A timetable
    measured against a baseline needs that baseline: started with the fault, before the
    load's workers were released (seconds on a busy machine), its first steps would
    meet no op at all. ``ran_as_planned()`` judges both: a timetable that began without
    its baseline ran against nothing to compare with, and fails.
    """

    proxy: TcpProxy
    steps: list[Step]
    begin_when: Callable[[], bool] | None = None
    begin_within_s: float = 10.0
    begun_on_time: bool | None = None
    done: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    #: The timetable as given, which ``ran_as_planned`` compares with what ran.
    planned: tuple[Step, ...] = field(init=False)
    #: The proxy's own windows: its phases are the schedule's steps.
    windows: Windows = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.planned = tuple(self.steps)
        self.windows = self.proxy.windows

    THREAD = "nemesis-proxy-schedule"

    def _join_s(self) -> float:
        return self.bound_s + 10

    def _ended(self) -> None:
        # Its windows are the proxy's: going back to ``pass`` closes the last one.
        self.proxy.set_phase("pass")

    @property
    def bound_s(self) -> float:
        """The longest the timetable can take: its wait for ``begin_when`` and its steps."""
        wait = self.begin_within_s if self.begin_when is not None else 0.0
        return wait + sum(s.duration_s for s in self.steps)

    def ran_as_planned(self) -> Verdict:
        """``schedule_ran``: the timetable began on its baseline (when it waits for one)
        and went through every fault phase in order, each about as long as planned
        (at least 0.9 of it, at most 1 s over)."""
        planned = [(s.phase, s.duration_s) for s in self.planned if s.phase != "pass"]
        got = [(w.phase, round(w.duration_s, 3)) for w in self.windows.windows]
        as_planned = len(got) == len(planned) and all(
            g == w and want * 0.9 <= d <= want + 1.0
            for (g, d), (w, want) in zip(got, planned, strict=True)
        )
        figures: dict[str, Any] = {
            "windows": got,
            "planned": planned,
            "begun_on_time": self.begun_on_time,
        }
        said = f"proxy phases {got} (planned {planned})"
        if self.begin_when is not None and self.begun_on_time is not True:
            why = (
                f"its baseline never came within {self.begin_within_s:g} s: the timetable "
                "started without it"
                if self.begun_on_time is False
                else "the timetable never began (stopped while it waited for its baseline)"
            )
            return Verdict(SCHEDULE_NAME, False, f"{why}; {said}", figures)
        if self.begin_when is not None:
            said = f"began on its baseline; {said}"
        return Verdict(SCHEDULE_NAME, as_planned, said, figures)

    def _begin(self) -> bool:
        if self.begin_when is None:
            return True
        end = time.monotonic() + self.begin_within_s
        while not self.begin_when():
            if time.monotonic() >= end:
                self.begun_on_time = False
                return not self._stop.is_set()
            if self._stop.wait(0.01):
                return False
        self.begun_on_time = True
        return True

    def _run(self) -> None:
        try:
            if not self._begin():
                return
            for step in self.steps:
                self.proxy.set_phase(step.phase, **step.params)
                if self._stop.wait(step.duration_s):
                    return
        finally:
            self.proxy.set_phase("pass")
            self.done.set()
