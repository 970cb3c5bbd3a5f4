"""A fault (or an observer) whose work runs on a daemon thread of its own, from start to stop."""

from __future__ import annotations

import threading
from typing import ClassVar, Self

from experiments.faults.window import Windows

__all__ = ["ThreadedFault"]


class ThreadedFault:
    """``start()``, ``stop()`` and ``with`` for a fault that works on a thread of its own.

    Subclasses name the thread (``THREAD``), give its work (``_run``, which ends when
    ``_stop`` is set) and the fields ``windows``, ``_stop`` and ``_thread`` (None until
    started), and say in ``_join_s()`` how long ``stop()`` waits for the thread: every
    fault is bounded, and a thread that outlives its bound is left to die as a daemon.
    Once the thread is gone, ``_ended()`` closes the fault's windows.
    """

    THREAD: ClassVar[str]
    windows: Windows
    _stop: threading.Event
    _thread: threading.Thread | None

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name=self.THREAD, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._join(self._join_s())

    def _join(self, timeout: float) -> None:
        if self._thread is not None:
            self._thread.join(timeout=timeout)
        self._ended()

    def _ended(self) -> None:
        """What the fault leaves behind once its thread is gone: its windows closed."""
        self.windows.close_all()

    def _join_s(self) -> float:
        raise NotImplementedError

    def _run(self) -> None:
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
