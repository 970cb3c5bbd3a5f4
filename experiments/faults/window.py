"""Active windows of a fault: when it was on, so ops can be labelled and charts shaded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from experiments.history import History, Op

__all__ = ["Window", "Windows", "label_ops"]


@dataclass(frozen=True)
class Window:
    """One stretch of time (monotonic ns) during which a fault was active."""

    fault: str
    phase: str
    start_ns: int
    end_ns: int

    @property
    def duration_s(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def overlaps(self, start_ns: int, end_ns: int) -> bool:
        return start_ns < self.end_ns and end_ns > self.start_ns

    def to_dict(self, origin_ns: int = 0) -> dict[str, Any]:
        return {
            "fault": self.fault,
            "phase": self.phase,
            "start_s": (self.start_ns - origin_ns) / 1e9,
            "end_s": (self.end_ns - origin_ns) / 1e9,
        }


@dataclass
class Windows:
    """A thread-safe record of a fault's windows; an open window has no end yet."""

    fault: str
    closed: list[Window] = field(default_factory=list)
    _open: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def open(self, phase: str) -> None:
        with self._lock:
            self._open.setdefault(phase, time.monotonic_ns())

    def close(self, phase: str) -> None:
        with self._lock:
            start = self._open.pop(phase, None)
            if start is not None:
                self.closed.append(Window(self.fault, phase, start, time.monotonic_ns()))

    def close_all(self) -> None:
        for phase in list(self._open):
            self.close(phase)

    @contextmanager
    def active(self, phase: str) -> Iterator[None]:
        self.open(phase)
        try:
            yield
        finally:
            self.close(phase)

    @property
    def windows(self) -> list[Window]:
        """Closed windows, and open ones as if they ended now."""
        now = time.monotonic_ns()
        with self._lock:
            still = [Window(self.fault, p, s, now) for p, s in self._open.items()]
            return sorted([*self.closed, *still], key=lambda w: w.start_ns)

    def phase_of(self, start_ns: int, end_ns: int) -> str | None:
        """The phase of the first window an interval overlaps, if any."""
        for w in self.windows:
            if w.overlaps(start_ns, end_ns):
                return w.phase
        return None


def label_ops(
    ops: History | Iterable[Op],
    windows: Iterable[Window],
    *,
    before: str = "before",
    after: str = "after",
) -> dict[str, int]:
    """Set each op's ``phase``: the window it overlaps, else before/after the first window.

    Returns the count of ops per phase. An op overlapping two windows takes the
    earlier one: it met the fault first.
    """
    ws = sorted(windows, key=lambda w: w.start_ns)
    counts: dict[str, int] = {}
    for op in ops:
        phase: str
        hit = next((w for w in ws if w.overlaps(op.invoke_ns, op.complete_ns)), None)
        if hit is not None:
            phase = hit.phase
        elif not ws or op.complete_ns <= ws[0].start_ns:
            phase = before
        elif op.invoke_ns >= ws[-1].end_ns:
            phase = after
        else:
            phase = "between"
        op.phase = phase
        counts[phase] = counts.get(phase, 0) + 1
    return counts
