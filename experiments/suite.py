"""The suite: run the notebooks headless against one database, render them, write the index.

One run is one pipeline of named steps (as papermill's ``execute`` reads):

    discover   notebooks/*.ipynb; a notebook names its scenario and the layers it supports
               in its metadata (``{"coupon_chaos": {"scenario": ..., "layers": [...]}}``;
               without it: the file stem, both layers). Adding a notebook is adding a file.
    provision  one database for the whole run (``coupon_core.database.provision``), unless
               a URL is given; its URL goes to every kernel in its environment
               (``DATABASE_URL``), never as a parameter: an injected literal would put
               a password into the executed notebook and its HTML (see "Secrets" below).
               The run's folder is made only once the database answers: a refused run
               leaves nothing behind.
    seed       a run seed (given or drawn); a run of one notebook uses it as it is, a run
               of several derives each scenario's seed from it and the scenario name, so
               both layers of a scenario run the same plan; each job records the command
               that replays exactly its plan (``Job.rerun``).
    execute    papermill, kernel ``python3``, up to ``jobs`` notebooks at once, immediate
               kernel shutdown; every cell runs (``allow_errors``) so the record cell saves
               the result and every failed assertion is reported, not just the first.
    render     each executed notebook to one self-contained HTML file (nbconvert, images as
               data URIs, no script or style fetched from the network); optionally a second
               one without the code cells.
    index      ``summary.json`` and ``index.html`` in ``results/<run-id>/``, with
               ``compare.html`` against the previous run when there is one, and
               ``results/latest`` pointing at the run.

A scenario passes when its notebook ran without an error output and every check of its
saved result passed; a notebook that crashed fails with its error. The pages themselves
are drawn by ``experiments.suite_html``; what a run reports is ``experiments.suite_report``.

Secrets: nothing a run writes or prints holds the database password. The URL reaches
the kernels through their environment only; ``summary.json`` and the index name it
redacted (``coupon_core.redact``); the rerun command reads it from ``$DATABASE_URL``.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shlex
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from experiments import compare, suite_html
from experiments.suite_report import JobReport, SuiteReport

__all__ = [
    "LAYERS",
    "NOTEBOOKS_DIR",
    "Job",
    "Notebook",
    "derive_seed",
    "discover",
    "line",
    "plan_jobs",
    "progress_reporter",
    "rerun_command",
    "run_suite",
    "scenario_layers",
]

LAYERS: tuple[str, ...] = ("service", "http")
NOTEBOOKS_DIR = Path(__file__).resolve().parents[1] / "notebooks"
KERNEL = "python3"
#: Per cell; the longest scenario (scale, 500 users over HTTP) takes well under a minute.
CELL_TIMEOUT_S = 900
_SEED_BITS = 31


# -- discover ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notebook:
    """A notebook of the suite: which scenario it runs, on which layers, with which knobs."""

    path: Path
    scenario: str
    layers: tuple[str, ...]
    #: Parameter names declared in its ``parameters`` cell (only those are injected).
    parameters: frozenset[str]
    title: str = ""
    #: Each parameter's default, as its source text in the ``parameters`` cell.
    defaults: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def load(cls, path: Path) -> Notebook:
        import nbformat
        import papermill

        nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
        meta = nb.metadata.get("coupon_chaos", {})
        layers = tuple(meta.get("layers", LAYERS))
        inspected = papermill.inspect_notebook(str(path))
        params = frozenset(inspected)
        defaults = {name: str(p.get("default")) for name, p in inspected.items()}
        title = next(
            (
                line.lstrip("# ").strip()
                for cell in nb.cells
                if cell.cell_type == "markdown"
                for line in cell.source.splitlines()
                if line.startswith("#")
            ),
            "",
        )
        return cls(path, str(meta.get("scenario", path.stem)), layers, params, title, defaults)


def discover(directory: Path = NOTEBOOKS_DIR) -> list[Notebook]:
    """Every notebook of ``directory`` (``*.ipynb``, checkpoints excluded), by file name."""
    return [Notebook.load(p) for p in sorted(Path(directory).glob("*.ipynb"))]


def scenario_layers(directory: Path = NOTEBOOKS_DIR) -> dict[str, tuple[str, ...]]:
    """Scenario -> layers of every notebook, read from metadata only (fast: for ``--help``)."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(Path(directory).glob("*.ipynb")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, ValueError):
            continue
        own = meta.get("coupon_chaos", {}) if isinstance(meta, dict) else {}
        found[str(own.get("scenario", path.stem))] = tuple(own.get("layers", LAYERS))
    return found


def derive_seed(run_seed: int, scenario: str) -> int:
    """A scenario's seed: stable for a run seed and a name, independent of the others."""
    digest = hashlib.sha256(f"{run_seed}:{scenario}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (1 << _SEED_BITS)


# -- execute -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One notebook on one layer."""

    notebook: Notebook
    layer: str
    strategy: str
    seed: int
    #: Parameters set with ``-p`` (already typed), as (name, value) pairs.
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def stem(self) -> str:
        return f"{self.notebook.scenario}-{self.layer}"

    @property
    def rerun(self) -> str:
        """The command that replays exactly this job's plan: its scenario, layer and seed."""
        return rerun_command(
            [self.notebook.scenario], [self.layer], self.strategy, self.seed, dict(self.overrides)
        )

    def parameters(
        self, out_dir: Path, target: str | None = None, cleanup: bool = False
    ) -> dict[str, Any]:
        """What papermill injects; never the database URL (it goes in the environment)."""
        offered: dict[str, Any] = {
            "seed": self.seed,
            "layer": self.layer,
            "strategy": self.strategy,
            "out_dir": str(out_dir),
            **dict(self.overrides),
        }
        # Only when asked: a notebook without these parameters still runs as before.
        if target is not None:
            offered["target"] = target
        if cleanup:
            offered["cleanup"] = True
        return {k: v for k, v in offered.items() if k in self.notebook.parameters}


@dataclass(frozen=True)
class _Against:
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


def _execute(job: Job, run_dir: Path, against: _Against, hide_code: bool) -> JobReport:
    try:
        return _execute_in_thread(job, run_dir, against, hide_code)
    finally:
        _close_thread_loop()


def _kernel_manager_class(env: dict[str, str]) -> type[Any]:
    """A kernel manager that starts its kernel with ``env`` added to ours.

    nbclient takes the class (``kernel_manager_class``) and owns the manager it makes,
    so the kernel is shut down as before; papermill offers no other way to a kernel's
    environment short of changing this process's ``os.environ`` (shared by threads).
    """
    from jupyter_client.manager import AsyncKernelManager

    class KernelWithEnv(AsyncKernelManager):
        async def start_kernel(self, **kw: Any) -> None:  # type: ignore[override]
            kw["env"] = {**kw.get("env", os.environ), **env}
            await super().start_kernel(**kw)

    return KernelWithEnv


def _close_thread_loop() -> None:
    # nbclient runs its coroutines on an event loop it creates for each thread and never
    # closes; close it here, in the worker thread that owns it, so no loop (and its
    # socket pair) is left for the garbage collector to warn about.
    import asyncio

    policy = asyncio.get_event_loop_policy()
    with contextlib.suppress(RuntimeError):
        loop = policy.get_event_loop()
        if not loop.is_running():
            loop.close()
    policy.set_event_loop(None)


def _execute_in_thread(job: Job, run_dir: Path, against: _Against, hide_code: bool) -> JobReport:
    import nbformat
    import papermill

    report = JobReport(job.notebook.scenario, job.layer, job.strategy, job.seed)
    report.rerun = job.rerun
    report.parameters = dict(job.overrides)
    data_dir = run_dir / "data" / job.stem
    data_dir.mkdir(parents=True, exist_ok=True)
    executed = run_dir / "notebooks" / f"{job.stem}.ipynb"
    executed.parent.mkdir(parents=True, exist_ok=True)
    report.notebook = executed.relative_to(run_dir).as_posix()

    started = time.perf_counter()
    crash: str | None = None
    try:
        papermill.execute_notebook(
            str(job.notebook.path),
            str(executed),
            parameters=job.parameters(data_dir, against.target, against.cleanup),
            kernel_name=KERNEL,
            # The URL (and any password in it) through the kernel's environment only.
            kernel_manager_class=_kernel_manager_class(against.kernel_env()),
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
            # ipykernel 7 warns on every start that loopback TCP is unencrypted; the
            # kernel's own log would bury the progress lines (cell output is unaffected).
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    except papermill.PapermillExecutionError:
        pass  # the errors are read from the executed notebook below, each with its cell
    except Exception as err:  # kernel died, timeout, unreadable notebook: the run failed
        crash = f"{type(err).__name__}: {err}"
    wall = time.perf_counter() - started

    nb = nbformat.read(executed, as_version=4) if executed.exists() else None  # type: ignore[no-untyped-call]
    errors = _cell_errors(nb) if nb is not None else []
    cells_s = _cells_duration(nb) if nb is not None else 0.0
    result = _load_result(data_dir)

    if result is not None:
        report.outcomes = result.get("outcomes", {})
        report.summary = result.get("summary", {})
        report.checks = [
            {
                "name": c["name"],
                "passed": c["passed"],
                "detail": c["detail"],
                **({"skipped": True} if c.get("skipped") else {}),
            }
            for c in result.get("checks", [])
        ]
        # With a result, each error is a failed assertion: report every one of them.
        report.checks += [{"name": n, "passed": False, "detail": d} for n, d in errors]
    elif nb is not None and "out_dir" not in job.notebook.parameters:
        # A notebook that records no Result (sweep, strategies, detection, performance)
        # is judged by its assertion cells, one check each: its row does not read
        # "0 / 0 checks".
        report.checks = _assertion_checks(nb)
    judged = {c["name"] for c in report.checks}
    # An error outside the assertion cells is the crash; the rest are its echoes.
    outside = [e for e in errors if e[0] not in judged]
    if crash is not None:
        report.error = crash
    elif result is None and outside:
        report.error = f"{outside[0][1]} ({outside[0][0]})"
    elif result is None and "out_dir" in job.notebook.parameters:
        report.error = "the notebook recorded no result (its last cell did not save one)"
    if report.error is not None:
        report.checks.insert(0, {"name": "notebook", "passed": False, "detail": report.error})
    report.passed = report.error is None and not errors and not report.failures

    experiment = float(result["duration_s"]) if result and "duration_s" in result else 0.0
    report.duration_s = wall
    report.timing = {
        "wall_s": round(wall, 3),
        "kernel_s": round(max(wall - cells_s, 0.0), 3),
        "cells_s": round(cells_s, 3),
        "experiment_s": round(experiment, 3),
    }
    if nb is not None:
        t0 = time.perf_counter()
        report.html = f"{job.stem}.html"
        if hide_code:
            report.html_no_code = f"{job.stem}.nocode.html"
        suite_html.render_job(nb, run_dir / report.html, report, run_dir.name, hide=False)
        if report.html_no_code is not None:
            suite_html.render_job(
                nb, run_dir / report.html_no_code, report, run_dir.name, hide=True
            )
        report.timing["render_s"] = round(time.perf_counter() - t0, 3)
    return report


def _cell_errors(nb: Any) -> list[tuple[str, str]]:
    """(name, "Ename: message") for each code cell with an error output, in order."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                # An assertion cell is best named by its assert line.
                detail = f"{output.get('ename')}: {output.get('evalue')}".strip()
                found.append((_cell_name(cell), detail))
                break
    return found


def _cell_name(cell: Any) -> str:
    """A code cell's name in a report: its execution count and its assert line (or first)."""
    lines = [s.strip() for s in cell.source.splitlines() if s.strip()]
    first = next((s for s in lines if s.startswith("assert")), lines[0] if lines else "")
    return f"cell [{cell.get('execution_count')}] {first[:100]}"


def _assertion_checks(nb: Any) -> list[dict[str, Any]]:
    """One check per code cell holding an ``assert``: passed when it ran without error."""
    checks = []
    for cell in nb.cells:
        if cell.cell_type != "code" or not any(
            line.strip().startswith("assert") for line in cell.source.splitlines()
        ):
            continue
        error = next((o for o in cell.get("outputs", []) if o.get("output_type") == "error"), None)
        if error is not None:
            passed, detail = False, f"{error.get('ename')}: {error.get('evalue')}".strip()
        elif cell.get("execution_count") is None:
            passed, detail = False, "not run: the kernel stopped before this cell"
        else:
            passed, detail = True, "held"
        checks.append({"name": _cell_name(cell), "passed": passed, "detail": detail})
    return checks


def _cells_duration(nb: Any) -> float:
    total = 0.0
    for cell in nb.cells:
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if isinstance(duration, int | float):
            total += float(duration)
    return total


def _load_result(data_dir: Path) -> dict[str, Any] | None:
    for path in sorted(data_dir.glob("*.result.json")):
        with contextlib.suppress(OSError, ValueError):
            loaded: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
            return loaded
    return None


# -- the run -------------------------------------------------------------------------------


#: Called with (None, 0, total) before the first notebook, then once per finished one.
Progress = Callable[[JobReport | None, int, int], None]


def plan_jobs(
    notebooks: Sequence[Notebook],
    scenarios: Sequence[str] | None,
    layers: Sequence[str],
    strategy: str,
    run_seed: int,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[Job]:
    """The (notebook, layer) pairs to run, in notebook order; unknown names are an error.

    One notebook runs with ``run_seed`` itself; several each with a seed derived from it.
    ``overrides`` are the ``-p`` parameters per scenario (typed); ``strategy`` among
    them replaces ``strategy`` for that scenario.
    """
    by_name = {nb.scenario: nb for nb in notebooks}
    if scenarios:
        unknown = [s for s in scenarios if s not in by_name]
        if unknown:
            raise ValueError(f"no notebook for {', '.join(unknown)}; have {', '.join(by_name)}")
        chosen = [nb for nb in notebooks if nb.scenario in set(scenarios)]
    else:
        chosen = list(notebooks)
    jobs = []
    for nb in chosen:
        own = dict((overrides or {}).get(nb.scenario, {}))
        own_strategy = str(own.pop("strategy", strategy))
        seed = run_seed if len(chosen) == 1 else derive_seed(run_seed, nb.scenario)
        jobs += [
            Job(nb, layer, own_strategy, seed, tuple(own.items()))
            for layer in layers
            if layer in nb.layers
        ]
    return jobs


def run_suite(
    scenarios: Sequence[str] | None = None,
    *,
    layers: Sequence[str] = ("service",),
    strategy: str = "row_lock",
    seed: int | None = None,
    database_url: str | None = None,
    out: Path | str = "results",
    jobs: int = 1,
    hide_code: bool = False,
    notebooks_dir: Path | str = NOTEBOOKS_DIR,
    progress: Progress | None = None,
    overrides: dict[str, dict[str, Any]] | None = None,
    docker: bool = False,
    on_plan: Callable[[int, list[Job]], None] | None = None,
    target: str | None = None,
    cleanup: bool = False,
) -> SuiteReport:
    """Run the suite and write ``<out>/<run-id>/``; see the module docstring for the steps.

    ``on_plan`` is called with the run seed and the jobs before the database starts.
    ``target``: every notebook runs over HTTP against that server, with
    ``database_url`` (given, never taken from ``$DATABASE_URL``) as its database if
    given, none started; a scenario that cannot run against a target is not executed
    and is reported skipped, with its reason. ``cleanup``: each scenario deletes its
    own rows afterwards.
    """
    from coupon_core.database import DatabaseHandle, provision
    from coupon_core.redact import redact_url

    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    run_seed = seed if seed is not None else secrets.randbelow(1 << _SEED_BITS)
    notebooks = discover(Path(notebooks_dir).resolve())
    planned = plan_jobs(notebooks, scenarios, layers, strategy, run_seed, overrides)
    if not planned:
        raise ValueError(f"nothing to run in {notebooks_dir} for layers {', '.join(layers)}")
    if on_plan is not None:
        on_plan(run_seed, planned)
    run_id = f"{started_at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
    # Absolute: notebooks run with their own folder as working directory.
    out = Path(out).resolve()
    run_dir = out / run_id

    if target is not None and set(layers) != {"http"}:
        raise ValueError("a target is reached over HTTP: run it with layers ('http',) only")
    db_started = time.perf_counter()
    handle: DatabaseHandle | None = None
    if target is None:
        database_url = database_url or os.environ.get("DATABASE_URL") or None
        handle = provision(database_url, docker=docker)
    elif database_url:
        # Against a target, only its own database, and only when given: none is started.
        handle = provision(database_url)
    database_s = time.perf_counter() - db_started
    try:
        run_dir.mkdir(parents=True)
    except BaseException:
        if handle is not None:
            handle.close()
        raise
    against = _Against(None if handle is None else handle.url, target, cleanup)
    reports: list[JobReport] = []
    if progress is not None:
        progress(None, 0, len(planned))
    skips = {job: _target_skip(job, target) for job in planned}
    try:
        for job, reason in skips.items():
            if reason is not None:
                reports.append(_skipped(job, reason))
                if progress is not None:
                    progress(reports[-1], len(reports), len(planned))
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="nb") as pool:
            futures = {
                pool.submit(_execute, job, run_dir, against, hide_code): job
                for job in planned
                if skips[job] is None
            }
            try:
                for future in as_completed(futures):
                    reports.append(future.result())
                    if progress is not None:
                        progress(reports[-1], len(reports), len(planned))
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
    finally:
        if handle is not None:
            handle.close()

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
            _common(planned),
            target,
            by_url=database_url is not None,
        ),
        database=redact_url(database_url)
        if database_url
        else ("none (the target's tables are not read)" if target else "embedded"),
    )
    previous = compare.previous_run(out, run_id)
    report.previous = previous.name if previous is not None else None
    (run_dir / "summary.json").write_text(
        json.dumps(report.to_dict(), indent=2, default=str, ensure_ascii=False), encoding="utf-8"
    )
    if previous is not None:
        try:
            cmp = compare.compare_runs(previous, run_dir)
            compare.write_html(cmp, run_dir / "compare.html")
        except (compare.RunNotFound, OSError, ValueError, KeyError, TypeError):
            report.previous = None  # an unreadable earlier run: no comparison, not a failure
    (run_dir / "index.html").write_text(suite_html.index_html(report), encoding="utf-8")
    _point_latest(out, run_id)
    return report


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
    report.checks = [
        {"name": "runnable", "passed": None, "detail": f"skipped: {reason}", "skipped": True}
    ]
    return report


def rerun_command(
    scenarios: Sequence[str] | None,
    layers: Sequence[str],
    strategy: str,
    seed: int,
    parameters: dict[str, Any] | None = None,
    target: str | None = None,
    *,
    by_url: bool = False,
) -> str:
    """``coupon-chaos run ...`` replaying a run: a bare ``--seed`` would run other layers.

    ``by_url``: the run used a database by URL; the command reads it (password and all)
    from ``$DATABASE_URL`` rather than showing it.
    """
    from experiments.params import assignments

    words = ["coupon-chaos", "run", *(scenarios or ())]
    layer = "both" if set(layers) == set(LAYERS) else ",".join(layers)
    if target is not None:
        words += ["--target", target]
    elif layer != "service":
        words += ["--layer", layer]
    if strategy != "row_lock":
        words += ["--strategy", strategy]
    words += assignments(parameters or {})
    url = ""
    if by_url:
        # Unquoted, so the shell expands it: the URL is read, never shown. Against a
        # target its database is TARGET_DATABASE_URL (DATABASE_URL may be another).
        env = "TARGET_DATABASE_URL" if target is not None else "DATABASE_URL"
        url = f' --database-url "${env}"'
    return f"{shlex.join(words)}{url} {shlex.join(['--seed', str(seed)])}"


def _common(jobs: Sequence[Job]) -> dict[str, Any]:
    """The -p parameters of a run (one value each, set on the notebooks declaring it)."""
    given: dict[str, Any] = {}
    for job in jobs:
        given.update(job.overrides)
    return given


def _point_latest(out: Path, run_id: str) -> None:
    # Replace atomically so a reader never sees no link; relative so the tree can move.
    tmp = out / f".latest-{os.getpid()}-{threading.get_ident()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_id, target_is_directory=True)
    os.replace(tmp, out / "latest")


# -- progress ------------------------------------------------------------------------------


def line(job: JobReport) -> str:
    """One plain line for a finished notebook."""
    if job.skipped is not None:
        return f"{job.name} [{job.layer}] skipped: {job.skipped}"
    verdict = "passed" if job.passed else "FAILED"
    return (
        f"{job.name} [{job.layer}] {verdict} in {job.duration_s:.1f} s "
        f"(experiment {job.timing.get('experiment_s', 0.0):.1f} s, seed {job.seed})"
    )


@contextlib.contextmanager
def progress_reporter() -> Iterator[Progress]:
    """A bar on a terminal, plain lines otherwise (CI logs keep every line)."""
    if not sys.stderr.isatty():

        def plain(job: JobReport | None, done: int, total: int) -> None:
            if job is None:
                print(f"running {total} notebooks", flush=True)
                return
            print(f"[{done}/{total}] {line(job)}", flush=True)

        yield plain
        return
    from tqdm import tqdm

    bar: Any = None

    def fancy(job: JobReport | None, done: int, total: int) -> None:
        nonlocal bar
        if job is None:
            bar = tqdm(total=total, unit="notebook", dynamic_ncols=True)
            return
        bar.write(line(job))
        bar.update(1)

    try:
        yield fancy
    finally:
        if bar is not None:
            bar.close()
