"""A fault that a thread of ours holds for ``hold_s`` seconds, then lets go."""

from __future__ import annotations

from experiments.faults.threaded import ThreadedFault

__all__ = ["HeldFault"]


class HeldFault(ThreadedFault):
    """A threaded fault held for ``hold_s`` (a row lock, pool connections).

    Subclasses set ``hold_s`` besides what ``ThreadedFault`` asks; their thread waits
    on ``_stop`` for ``hold_s``. ``stop()`` lets go early, ``wait()`` waits for the end.
    """

    hold_s: float

    def _join_s(self) -> float:
        return self.hold_s + 10

    def wait(self) -> None:
        """Block until the hold time is over (or ``stop()``) and the thread is gone."""
        if self._thread is not None:
            self._thread.join(timeout=self._join_s())
