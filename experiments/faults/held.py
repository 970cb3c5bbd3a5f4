"""A fault that a thread of ours holds for ``hold_s`` seconds, then lets go."""

from __future__ import annotations

import threading

from experiments.faults.window import Windows

__all__ = ["HeldFault"]


class HeldFault:
    """Release and join for faults held by a thread (a row lock, pool connections).

    Subclasses set ``hold_s``, ``windows``, ``_release`` and ``_thread`` and start the
    thread in ``start()``; ``stop()`` lets go early, ``wait()`` waits for the end.
    """

    hold_s: float
    windows: Windows
    _release: threading.Event
    _thread: threading.Thread | None

    def stop(self) -> None:
        self._release.set()
        self.wait()
        self.windows.close_all()

    def wait(self) -> None:
        """Block until the hold time is over (or ``stop()``) and the thread is gone."""
        if self._thread is not None:
            self._thread.join(timeout=self.hold_s + 10)

    def __exit__(self, *exc: object) -> None:
        self.stop()
