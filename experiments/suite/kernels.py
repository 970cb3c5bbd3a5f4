"""Kernels started ahead of need: a notebook takes one that is up, its imports already done.

A notebook of the suite spends more time before its experiment than in it: the kernel
starts (0.65 s quiet, 1.5-2.5 s on a loaded machine) and then imports the lab
(``from experiments import report, scenarios``: pandas, matplotlib, psycopg, the
pipeline; 1.3 s of CPU, 1.5-3.7 s of wall measured in the suite). ``WarmKernels``
launches each kernel while the notebook before it runs: with the run's environment,
in the notebooks' folder, and with ``PRELOAD`` imported at start-up
(``IPKernelApp.exec_lines``, which binds no name in the notebook's namespace and
takes no execution count). When a notebook starts, its kernel is up and its first
import is a dictionary look-up.

A kernel that died while it waited is shut down and replaced when a notebook asks for
it, never handed out. Every notebook still gets a kernel of its own, used once: nothing a notebook leaves
(globals, threads, a crashed kernel) reaches the next one. A kernel taken is owned by
that notebook's execution (``experiments.suite.engine``: nbclient shuts it down as one
it started); those never taken are shut down by ``close``.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["KERNEL_ARGUMENTS", "PRELOAD", "WarmKernels", "preload_line", "release"]

#: What the suite's notebooks import first; imported by each kernel as it starts.
PRELOAD: tuple[str, ...] = ("experiments.report", "experiments.scenarios")
#: ipykernel 7 warns on every start that loopback TCP is unencrypted; the kernel's own
#: log would bury the progress lines (cell output is unaffected).
KERNEL_ARGUMENTS: tuple[str, ...] = ("--IPKernelApp.log_level=ERROR",)


def preload_line(modules: Sequence[str]) -> str:
    """One statement importing ``modules`` that binds no name in the user's namespace
    (``__import__`` in a loop whose variable is deleted) and displays nothing."""
    names = ", ".join(repr(m) for m in modules)
    return f"for __m in ({names},): __import__(__m)\ndel __m"


class WarmKernels:
    """Up to ``depth`` kernels started ahead of need, all alike: one ``env``, one ``cwd``."""

    def __init__(
        self,
        env: Mapping[str, str],
        cwd: Path,
        *,
        depth: int = 1,
        preload: Sequence[str] = PRELOAD,
        kernel_name: str = "python3",
    ) -> None:
        self._env = dict(env)
        self._cwd = str(cwd)
        self._depth = max(0, depth)
        self._kernel_name = kernel_name
        self._arguments = list(KERNEL_ARGUMENTS)
        if preload:
            self._arguments.append(f"--IPKernelApp.exec_lines={[preload_line(preload)]!r}")
        self._lock = threading.Lock()
        self._ready: list[Any] = []
        self._closed = False
        #: Kernels launched, and how many of them a notebook took already up.
        self.launched = 0
        self.taken_warm = 0

    def serves(self, cwd: Path) -> bool:
        """Its kernels start in ``cwd`` (a notebook elsewhere starts its own)."""
        return Path(self._cwd) == Path(cwd)

    def fill(self) -> None:
        """Launch kernels until ``depth`` are waiting (a launch returns at once: the
        kernel starts and imports in its own process)."""
        while True:
            with self._lock:
                if self._closed or len(self._ready) >= self._depth:
                    return
            km = self._launch()
            with self._lock:
                if not self._closed:
                    self._ready.append(km)
                    continue
            _shutdown(km)
            return

    def take(self) -> Any:
        """A started kernel manager (one waiting, else one launched now); the next is
        launched before this returns, so it starts while this one's notebook runs."""
        while True:
            with self._lock:
                if self._closed:
                    raise RuntimeError("the run's kernels are closed")
                km = self._ready.pop(0) if self._ready else None
            if km is None:
                km = self._launch()
                break
            if _alive(km):
                with self._lock:
                    self.taken_warm += 1
                break
            # Died while it waited (killed, out of memory): never handed to a notebook,
            # whose first cell would fail as the kernel's death, not the notebook's.
            _shutdown(km)
        self.fill()
        return km

    def close(self) -> None:
        """Shut down every kernel never taken; no kernel is launched after this."""
        with self._lock:
            self._closed = True
            left, self._ready = self._ready, []
        for km in left:
            _shutdown(km)

    def _launch(self) -> Any:
        from jupyter_client.manager import AsyncKernelManager
        from jupyter_core.utils import run_sync

        km = AsyncKernelManager(kernel_name=self._kernel_name)
        run_sync(km.start_kernel)(
            env={**os.environ, **self._env},
            cwd=self._cwd,
            extra_arguments=list(self._arguments),
        )
        with self._lock:
            self.launched += 1
        return km


def release(km: Any) -> None:
    """End ``km``'s kernel if it still runs (its notebook's client did not get to it)."""
    if km.has_kernel:
        _shutdown(km)


def _alive(km: Any) -> bool:
    from jupyter_core.utils import run_sync

    return bool(run_sync(km.is_alive)())


def _shutdown(km: Any) -> None:
    from jupyter_core.utils import run_sync

    try:
        run_sync(km.shutdown_kernel)(now=True)
    finally:
        run_sync(km.cleanup_resources)()
