"""One run of the suite, step by step; an interrupted run stops all it started and is recorded."""

from __future__ import annotations

import os
import secrets
import signal
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiments.run_record import new_run_id
from experiments.suite import record
from experiments.suite.discover import (
    NOTEBOOKS_DIR,
    SEED_BITS,
    Job,
    common_parameters,
    discover,
    plan_jobs,
    rerun_command,
)
from experiments.suite.execute import INTERRUPTED, Against, Kernels, execute
from experiments.suite.kernels import WarmKernels
from experiments.suite.progress import Progress, Started
from experiments.suite.schedule import Gate, alone_reason, default_jobs
from experiments.suite_report import JobReport, SuiteReport

__all__ = ["run_suite"]


def run_suite(
    scenarios: Sequence[str] | None = None,
    *,
    layers: Sequence[str] = ("service",),
    strategy: str = "row_lock",
    seed: int | None = None,
    database_url: str | None = None,
    out: Path | str = "results",
    jobs: int | None = None,
    hide_code: bool = False,
    notebooks_dir: Path | str = NOTEBOOKS_DIR,
    progress: Progress | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    docker: bool = False,
    on_plan: Callable[[int, list[Job]], None] | None = None,
    target: str | None = None,
    cleanup: bool = False,
    on_start: Started | None = None,
) -> SuiteReport:
    """Run the suite and write ``<out>/<run-id>/``; see ``experiments.suite`` for the steps.

    ``jobs``: notebooks at once (None: ``schedule.default_jobs()``); a notebook that
    cannot share the machine runs alone whatever it says (``schedule.alone_reason``).
    ``on_plan`` is called with the run seed and the jobs before the database starts.
    ``target``: every notebook runs over HTTP against that server, with
    ``database_url`` (given, never taken from ``$DATABASE_URL``) as its database if
    given, none started; a scenario that cannot run against a target is not executed
    and is reported skipped, with its reason. ``cleanup``: each scenario deletes its
    own rows afterwards. ``on_start`` is told each notebook and its bound as it starts.

    Interrupted (KeyboardInterrupt, which the CLI raises for SIGINT and SIGTERM alike):
    every kernel is stopped, the database closed, and the run recorded with the status
    ``interrupted`` (its folder, ``summary.json``, ``index.html``, ``latest``) before
    the interrupt goes on up.
    """
    from coupon_core.database import DatabaseHandle, provision
    from coupon_core.redact import redact_url

    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    jobs = default_jobs() if jobs is None else jobs
    run_seed = seed if seed is not None else secrets.randbelow(1 << SEED_BITS)
    notebooks = discover(Path(notebooks_dir).resolve())
    planned = plan_jobs(notebooks, scenarios, layers, strategy, run_seed, overrides)
    if not planned:
        raise ValueError(f"nothing to run in {notebooks_dir} for layers {', '.join(layers)}")
    if on_plan is not None:
        on_plan(run_seed, planned)
    run_id = new_run_id(started_at)
    # Absolute: notebooks run with their own folder as working directory.
    out = Path(out).resolve()
    run_dir = out / run_id

    if target is not None and set(layers) != {"http"}:
        raise ValueError("a target is reached over HTTP: run it with layers ('http',) only")
    db_started = time.perf_counter()
    handle: DatabaseHandle | None = None
    try:
        if target is None:
            database_url = database_url or os.environ.get("DATABASE_URL") or None
            handle = provision(database_url, docker=docker)
        elif database_url:
            # Against a target, only its own database, and only when given: none is started.
            handle = provision(database_url)
        database_s = time.perf_counter() - db_started
        run_dir.mkdir(parents=True)
    except BaseException:
        # Nothing ran yet: a refused (or interrupted) start leaves nothing behind.
        if handle is not None:
            handle.close()
        raise
    against = Against(None if handle is None else handle.url, target, cleanup)
    reports: list[JobReport] = []
    interrupt: BaseException | None = None
    try:
        reports, interrupt = _execute_all(
            planned, run_dir, against, hide_code, jobs, progress, on_start, Path(notebooks_dir)
        )
    finally:
        if handle is not None:
            handle.close()

    done = {(r.name, r.layer) for r in reports}
    reports += [_not_run(j) for j in planned if (j.notebook.scenario, j.layer) not in done]
    order = {(j.notebook.scenario, j.layer): i for i, j in enumerate(planned)}
    reports.sort(key=lambda r: order[(r.name, r.layer)])
    report = SuiteReport(
        run_id=run_id,
        run_dir=run_dir,
        seed=run_seed,
        started_at=started_at.isoformat(timespec="seconds"),
        duration_s=time.perf_counter() - t0,
        jobs=reports,
        database_s=database_s,
        parallel=max(1, jobs),
        rerun=rerun_command(
            scenarios,
            layers,
            strategy,
            run_seed,
            common_parameters(planned),
            target,
            by_url=database_url is not None,
        ),
        database=redact_url(database_url)
        if database_url
        else ("none (the target's tables are not read)" if target else "embedded"),
        interrupted=None if interrupt is None else _signal_name(interrupt),
    )
    record.record_run(report, out)
    if interrupt is not None:
        # Said by the command (it prints the notes of an interrupt): where the run is.
        interrupt.add_note(
            f"run {run_id} interrupted by {report.interrupted}: report: {run_dir / 'index.html'}"
        )
        raise interrupt
    return report


def _execute_all(
    planned: list[Job],
    run_dir: Path,
    against: Against,
    hide_code: bool,
    jobs: int,
    progress: Progress | None,
    on_start: Started | None,
    notebooks_dir: Path,
) -> tuple[list[JobReport], BaseException | None]:
    """Every job's report, in the order they finished; and the interrupt, if one came.

    Up to ``jobs`` notebooks execute at once (``Gate``; one alone when it must), on
    kernels started ahead of need (``WarmKernels``); one more thread than that, so a
    notebook's pages render while the next one runs.

    On an interrupt every live kernel is stopped (SIGINT, then SIGKILL after a grace)
    and the pool drained: no notebook of the run is left running.
    """
    reports: list[JobReport] = []
    if progress is not None:
        progress(None, 0, len(planned))
    skips = {job: _target_skip(job, against.target) for job in planned}
    kernels = Kernels()
    width = max(1, jobs)
    gate = Gate(width)
    runnable = [job for job in planned if skips[job] is None]
    warm = WarmKernels(
        against.kernel_env(), notebooks_dir.resolve(), depth=min(width, len(runnable))
    )

    def finished(report: JobReport) -> None:
        reports.append(report)
        if progress is not None:
            progress(report, len(reports), len(planned))

    pool = ThreadPoolExecutor(max_workers=width + 1, thread_name_prefix="nb")
    futures: dict[Future[JobReport], Job] = {}
    try:
        for job, reason in skips.items():
            if reason is not None:
                finished(_skipped(job, reason))
        warm.fill()
        futures = {
            pool.submit(
                execute,
                job,
                run_dir,
                against,
                hide_code,
                kernels,
                on_start,
                warm=warm,
                slot=gate.hold(alone=alone_reason(job) is not None),
            ): job
            for job in runnable
        }
        for future in as_completed(futures):
            finished(future.result())
    except KeyboardInterrupt as err:
        for future in futures:
            future.cancel()
        warm.close()
        kernels.stop_all(INTERRUPTED)
        pool.shutdown(wait=True, cancel_futures=True)
        for future, _ in futures.items():
            if future.done() and not future.cancelled() and future.exception() is None:
                report = future.result()
                if all((r.name, r.layer) != (report.name, report.layer) for r in reports):
                    reports.append(report)
        return reports, err
    except BaseException:
        warm.close()
        kernels.stop_all(INTERRUPTED)
        pool.shutdown(wait=True, cancel_futures=True)
        raise
    finally:
        warm.close()
    pool.shutdown(wait=True)
    return reports, None


def _signal_name(err: BaseException) -> str:
    signum = getattr(err, "signum", signal.SIGINT)
    try:
        return signal.Signals(signum).name
    except ValueError:
        return str(signum)


def _target_skip(job: Job, target: str | None) -> str | None:
    if target is None:
        return None
    from experiments.scenarios import SCENARIOS

    scenario = SCENARIOS.get(job.notebook.scenario)
    if scenario is None:
        return "not a registered scenario: what it needs of a target is unknown"
    return scenario.target_skip_reason(target)


def _skipped(job: Job, reason: str) -> JobReport:
    """A notebook not run: one skipped check with the reason; neither passed nor failed."""
    report = JobReport(job.notebook.scenario, job.layer, job.strategy, job.seed)
    report.skipped = reason
    report.status = "skipped"
    report.checks = [
        {"name": "runnable", "passed": None, "detail": f"skipped: {reason}", "skipped": True}
    ]
    return report


def _not_run(job: Job) -> JobReport:
    """A notebook the interrupted run never started (or never finished)."""
    report = JobReport(job.notebook.scenario, job.layer, job.strategy, job.seed)
    report.status = "interrupted"
    report.rerun = job.rerun
    report.parameters = dict(job.overrides)
    report.error = "not run: the run was interrupted before it"
    report.checks = [{"name": "notebook", "passed": None, "detail": report.error}]
    return report
