"""Executing one notebook: papermill on a kernel of its own, bounded, and stoppable.

Each notebook runs with papermill (kernel ``python3``, immediate shutdown, every cell
run: ``allow_errors``) in a worker thread of the suite. Its kernel is a ``Kernel``
held in the run's ``Kernels``, so that it can be stopped from outside the thread:

    stop   SIGINT to the kernel: the running cell raises KeyboardInterrupt, so the
           contexts it opened (``open_lab``: servers, clusters, pools) close as they
           would on any error; the next cell does not start (``on_cell_start``
           raises ``NotebookStopped``) and papermill shuts the kernel down.
    kill   after ``STOP_GRACE_S`` without an end, SIGKILL to the kernel's process
           group (a kernel runs in a session of its own).

Two things stop a notebook: its bound (``notebook_bound``: its scenario's run bound
``RUN_BOUND_FACTOR`` times, plus ``NOTEBOOK_MARGIN_S``; past it, the row says
"timed out after N s" and the suite goes on), and an interrupt of the whole run
(``Kernels.stop_all``).
"""

from __future__ import annotations

import ast
import asyncio
import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.errors import SpecError
from experiments.suite import judge, record
from experiments.suite.discover import Job
from experiments.suite.engine import register as suite_engine
from experiments.suite.kernels import KERNEL_ARGUMENTS, WarmKernels, release
from experiments.suite_report import JobReport

__all__ = [
    "CELL_TIMEOUT_S",
    "INTERRUPTED",
    "KERNEL",
    "NOTEBOOK_MARGIN_S",
    "RUN_BOUND_FACTOR",
    "STOP_GRACE_S",
    "Against",
    "Kernel",
    "Kernels",
    "NotebookStopped",
    "execute",
    "notebook_bound",
]

KERNEL = "python3"
#: Per cell; the longest scenario (scale, 500 users over HTTP) takes well under a minute.
CELL_TIMEOUT_S = 900
#: A scenario may run its plan more than once under its run bound: scale runs three
#: sizes, each bounded alone; a redrawn stampede runs again only after a quick attempt.
RUN_BOUND_FACTOR = 3
#: Beyond the run bounds: kernel start (0.65 s, several under load), imports, setup,
#: checks (the linearizability search has a bound of its own), charts, the record.
NOTEBOOK_MARGIN_S = 120.0
#: From SIGINT to SIGKILL: a lab stops its servers and clusters within a few seconds.
STOP_GRACE_S = 10.0
#: The reason of a kernel stopped because the whole run was interrupted.
INTERRUPTED = "interrupted"


class NotebookStopped(Exception):
    """Raised before a cell of a notebook that was stopped: the rest is not run."""


@dataclass(frozen=True)
class Against:
    """What every notebook of a run is pointed at."""

    database_url: str | None
    target: str | None = None
    cleanup: bool = False

    def kernel_env(self) -> dict[str, str]:
        """The URL goes to the kernel by its environment: never in a notebook's parameters.

        Against a target, its database (if given) is ``TARGET_DATABASE_URL``, and
        ``DATABASE_URL`` is emptied: a database of ours must never pass for the target's.
        """
        if self.target is None:
            return {"DATABASE_URL": self.database_url or ""}
        return {"DATABASE_URL": "", "TARGET_DATABASE_URL": self.database_url or ""}


class Kernel:
    """One notebook's kernel, as seen from outside its thread: stop it, or kill it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pid: int | None = None
        self.pgid: int | None = None
        #: Why it was stopped (``timed out after N s``, ``interrupted``); None if not.
        self.reason: str | None = None
        #: Set once the notebook's thread is done with it (executed, shut down).
        self.done = threading.Event()

    def attach(self, pid: int | None, pgid: int | None) -> None:
        with self._lock:
            self.pid, self.pgid = pid, pgid
            stopped = self.reason is not None
        if stopped:
            self._signal(signal.SIGINT)

    def stop(self, reason: str) -> None:
        """SIGINT to the kernel; the first reason given stays."""
        with self._lock:
            if self.reason is None:
                self.reason = reason
        self._signal(signal.SIGINT)

    def kill(self) -> None:
        """SIGKILL to the kernel's process group (it has a session of its own)."""
        with self._lock:
            pgid = self.pgid
        # Never our own group: a kernel started without a session of its own is killed alone.
        if pgid is not None and pgid > 1 and pgid != os.getpgrp():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        else:
            self._signal(signal.SIGKILL)

    def stop_within(self, reason: str, grace_s: float) -> None:
        """Stop it; kill it if its notebook has not ended ``grace_s`` later."""
        self.stop(reason)
        if not self.done.wait(grace_s):
            self.kill()

    def before_cell(self, **_: Any) -> None:
        """nbclient's ``on_cell_start``: a stopped notebook runs no further cell."""
        if self.reason is not None:
            raise NotebookStopped(self.reason)

    def _signal(self, signum: int) -> None:
        with self._lock:
            pid = self.pid
        if pid is not None and pid > 1:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signum)


class Kernels:
    """The kernels of a run that are alive, so that an interrupt can stop every one."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live: set[Kernel] = set()
        self._stopping: str | None = None

    def add(self, kernel: Kernel) -> None:
        """Hold ``kernel``; one that starts once the run is stopping is stopped at once."""
        with self._lock:
            self._live.add(kernel)
            stopping = self._stopping
        if stopping is not None:
            kernel.stop(stopping)

    def discard(self, kernel: Kernel) -> None:
        with self._lock:
            self._live.discard(kernel)

    def stop_all(self, reason: str = INTERRUPTED, grace_s: float | None = None) -> None:
        """Stop every live kernel at once, then kill those still running after the grace."""
        grace = STOP_GRACE_S if grace_s is None else grace_s
        with self._lock:
            self._stopping = reason
            live = list(self._live)
        for kernel in live:
            kernel.stop(reason)
        end = time.monotonic() + grace
        for kernel in live:
            if not kernel.done.wait(max(0.0, end - time.monotonic())):
                kernel.kill()


def notebook_bound(job: Job) -> float | None:
    """Seconds a notebook may run: its run bound x its runs + the margin.

    The run bound is its ``-p run_timeout_s``, else its parameters cell's, else its
    scenario's (its own figures, its ``common``, then the common default); its runs are the scenario's
    ``run_count`` for the notebook's parameters (isolation: cells x seeds), at least
    ``RUN_BOUND_FACTOR``. A notebook of no registered scenario that declares none
    (sweep, detection, performance, strategies) has no bound but the per-cell one.
    """
    from experiments.scenarios import COMMON_DEFAULTS, SCENARIOS

    scenario = SCENARIOS.get(job.notebook.scenario)
    given = dict(job.overrides).get("run_timeout_s", job.notebook.defaults.get("run_timeout_s"))
    bound: float | None = None
    with contextlib.suppress(TypeError, ValueError):
        bound = None if given is None else float(given)
    if bound is None:
        if scenario is None:
            return None
        common = {**COMMON_DEFAULTS, **scenario.common, **scenario.defaults}
        bound = float(common["run_timeout_s"])
    runs = 1
    if scenario is not None:
        # The parameters cell's values are its source text; -p values are typed.
        params: dict[str, Any] = {}
        for name, text in job.notebook.defaults.items():
            with contextlib.suppress(ValueError, SyntaxError):
                params[name] = ast.literal_eval(text)
        params.update(job.overrides)
        known = {k: v for k, v in params.items() if k in scenario.defaults}
        # A value the scenario refuses is the notebook's to refuse, in its first cell;
        # any other error here is the lab's own and is raised.
        with contextlib.suppress(SpecError):
            runs = scenario.run_count(**known)
    return max(RUN_BOUND_FACTOR, runs) * bound + NOTEBOOK_MARGIN_S


def execute(
    job: Job,
    run_dir: Path,
    against: Against,
    hide_code: bool,
    kernels: Kernels,
    on_start: Callable[[Job, float | None], None] | None = None,
    *,
    warm: WarmKernels | None = None,
    slot: contextlib.AbstractContextManager[Any] | None = None,
) -> JobReport:
    """Run ``job``'s notebook into ``run_dir``, judge it and render its pages.

    ``on_start`` is told the job and its bound as it starts. ``warm``: the run's kernels
    started ahead of need (one is taken; else the kernel starts here). ``slot`` is held
    while the notebook executes, not while its pages render: the next notebook runs
    meanwhile (``orchestrate``'s gate of notebooks at once).
    """
    with slot if slot is not None else contextlib.nullcontext():
        report, nb = _run(job, run_dir, against, kernels, on_start, warm)
    # An interrupted run ends as soon as it can: its executed notebook is kept, unrendered.
    if nb is not None and report.status != "interrupted":
        try:
            record.render_pages(nb, report, run_dir, hide_code)
        except Exception as err:  # on this thread, not the run's: said in the report
            record.render_failed(report, err)
    return report


def _run(
    job: Job,
    run_dir: Path,
    against: Against,
    kernels: Kernels,
    on_start: Callable[[Job, float | None], None] | None,
    warm: WarmKernels | None,
) -> tuple[JobReport, Any]:
    kernel = Kernel()
    kernels.add(kernel)
    bound = notebook_bound(job)
    if on_start is not None:
        on_start(job, bound)
    timer: threading.Timer | None = None
    if bound is not None:
        reason = f"timed out after {bound:g} s"
        timer = threading.Timer(bound, kernel.stop_within, args=(reason, STOP_GRACE_S))
        timer.daemon = True
        timer.start()
    try:
        return _execute(job, run_dir, against, kernel, warm)
    finally:
        kernel.done.set()
        kernels.discard(kernel)
        if timer is not None:
            timer.cancel()
        _close_thread_loop()


def _kernel_manager_class(env: dict[str, str], kernel: Kernel) -> type[Any]:
    """A kernel manager that starts its kernel with ``env`` added to ours, and tells
    ``kernel`` its pid and process group (so it can be stopped from outside).

    nbclient takes the class (``kernel_manager_class``) and owns the manager it makes,
    so the kernel is shut down as before; papermill offers no other way to a kernel's
    environment short of changing this process's ``os.environ`` (shared by threads).
    """
    from jupyter_client.manager import AsyncKernelManager

    class KernelWithEnv(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw["env"] = {**kw.get("env", os.environ), **env}
            await super().start_kernel(**kw)
            kernel.attach(*_process_of(self))

    return KernelWithEnv


def _process_of(km: Any) -> tuple[int | None, int | None]:
    """A started kernel's pid and process group, as its provisioner knows them."""
    provisioner = km.provisioner
    return getattr(provisioner, "pid", None), getattr(provisioner, "pgid", None)


def _close_thread_loop() -> None:
    # nbclient runs its coroutines on an event loop it creates for each thread and never
    # closes; close it here, in the worker thread that owns it, so no loop (and its
    # socket pair) is left for the garbage collector to warn about.
    policy = asyncio.get_event_loop_policy()
    with contextlib.suppress(RuntimeError):
        loop = policy.get_event_loop()
        if not loop.is_running():
            loop.close()
    policy.set_event_loop(None)


def _execute(
    job: Job, run_dir: Path, against: Against, kernel: Kernel, warm: WarmKernels | None
) -> tuple[JobReport, Any]:
    import nbformat
    import papermill

    report = JobReport(job.notebook.scenario, job.layer, job.strategy, job.seed)
    # Against a target the row replays against it (its database, if given, by URL).
    report.rerun = job.rerun_against(against.target, against.database_url is not None)
    report.parameters = dict(job.overrides)
    data_dir = run_dir / "data" / job.stem
    data_dir.mkdir(parents=True, exist_ok=True)
    executed = run_dir / "notebooks" / f"{job.stem}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    report.notebook = executed.relative_to(run_dir).as_posix()

    started = time.perf_counter()
    crash: str | None = None
    km: Any = None
    try:
        if warm is not None and warm.serves(job.notebook.path.parent):
            km = warm.take()
            kernel.attach(*_process_of(km))
            how: dict[str, Any] = {"km": km}
        else:
            how = {
                # The URL (and any password in it) through the kernel's environment only.
                "kernel_manager_class": _kernel_manager_class(against.kernel_env(), kernel),
                "extra_arguments": list(KERNEL_ARGUMENTS),
            }
        papermill.execute_notebook(
            str(job.notebook.path),
            str(executed),
            parameters=job.parameters(data_dir, against.target, against.cleanup),
            kernel_name=KERNEL,
            engine_name=suite_engine(),
            progress_bar=False,
            # Not papermill's cwd=: it chdirs the whole process, which threads share.
            # nbclient starts the kernel in resources' path instead.
            resources={"metadata": {"path": str(job.notebook.path.parent)}},
            start_timeout=60,
            execution_timeout=CELL_TIMEOUT_S,
            # Measured here: graceful shutdown sometimes stalls ~3 s; nothing to flush.
            shutdown_kernel="immediate",
            # Every cell runs: the record cell saves the result after a failed assertion.
            allow_errors=True,
            # A stopped notebook (its bound, an interrupt) starts no further cell.
            on_cell_start=kernel.before_cell,
            **how,
        )
    except papermill.PapermillExecutionError:
        pass  # the errors are read from the executed notebook below, each with its cell
    except Exception as err:  # kernel died, timeout, unreadable notebook: the run failed
        crash = f"{type(err).__name__}: {err}"
    finally:
        if km is not None:
            release(km)  # nbclient ended it; not if papermill failed before its client
    wall = time.perf_counter() - started
    if kernel.reason is not None:
        crash = kernel.reason

    nb = nbformat.read(executed, as_version=4) if executed.exists() else None  # type: ignore[no-untyped-call]
    result = judge.load_result(data_dir)
    judge.judge(report, nb, result, records=job.notebook.records, crash=crash)
    if kernel.reason == INTERRUPTED:
        report.status, report.passed = "interrupted", False

    cells_s = judge.cells_duration(nb) if nb is not None else 0.0
    experiment = result.duration_s if result is not None else 0.0
    report.duration_s = wall
    report.timing = {
        "wall_s": round(wall, 3),
        "kernel_s": round(max(wall - cells_s, 0.0), 3),
        "cells_s": round(cells_s, 3),
        "experiment_s": round(experiment, 3),
    }
    return report, nb
