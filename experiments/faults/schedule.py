"""A seeded timetable of proxy phases, run in a thread while a load goes on."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from experiments.faults.proxy import PhaseName, TcpProxy
from experiments.faults.window import Windows

__all__ = ["ProxySchedule", "Step"]


@dataclass(frozen=True)
class Step:
    """Hold ``phase`` (with its parameters) for ``duration_s`` seconds."""

    phase: PhaseName
    duration_s: float
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class ProxySchedule:
    """Switches ``proxy`` through ``steps`` in order, then back to ``pass``.

    Bounded by the sum of the durations; ``stop()`` ends it early and always leaves
    the proxy in ``pass``. Its windows are the proxy's.
    """

    proxy: TcpProxy
    steps: list[Step]
    done: threading.Event = field(default_factory=threading.Event)
    _abort: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def windows(self) -> Windows:
        return self.proxy.windows

    def start(self) -> ProxySchedule:
        self._thread = threading.Thread(
            target=self._run, name="nemesis-proxy-schedule", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._abort.set()
        if self._thread is not None:
            self._thread.join(timeout=sum(s.duration_s for s in self.steps) + 10)
        self.proxy.set_phase("pass")

    def _run(self) -> None:
        try:
            for step in self.steps:
                self.proxy.set_phase(step.phase, **step.params)
                if self._abort.wait(step.duration_s):
                    return
        finally:
            self.proxy.set_phase("pass")
            self.done.set()
