"""The suite: run the notebooks headless against one database, render them, write the index.

One run is one pipeline of named steps (as papermill's ``execute`` reads):

    discover   notebooks/*.ipynb; a notebook names its scenario and the layers it supports
               in its metadata (``{"coupon_chaos": {"scenario": ..., "layers": [...]}}``;
               without it: the file stem, both layers). Adding a notebook is adding a file.
    provision  one database for the whole run (``coupon_core.database.provision``), unless
               a URL is given; its URL goes to every notebook as ``database_url``.
    seed       a run seed (given or drawn); each scenario's seed derives from it and the
               scenario name, so both layers of a scenario run the same plan.
    execute    papermill, kernel ``python3``, up to ``jobs`` notebooks at once, immediate
               kernel shutdown; every cell runs (``allow_errors``) so the record cell saves
               the result and every failed assertion is reported, not just the first.
    render     each executed notebook to one self-contained HTML file (nbconvert, images as
               data URIs, no script or style fetched from the network); optionally a second
               one without the code cells.
    index      ``summary.json`` and ``index.html`` in ``results/<run-id>/``, and
               ``results/latest`` pointing at the run.

A scenario passes when its notebook ran without an error output and every check of its
saved result passed; a notebook that crashed fails with its error.
"""

from __future__ import annotations

import contextlib
import hashlib
import html
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

__all__ = [
    "LAYERS",
    "NOTEBOOKS_DIR",
    "Job",
    "JobReport",
    "Notebook",
    "SuiteReport",
    "derive_seed",
    "discover",
    "line",
    "plan_jobs",
    "progress_reporter",
    "render_html",
    "run_suite",
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

    @classmethod
    def load(cls, path: Path) -> Notebook:
        import nbformat
        import papermill

        nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
        meta = nb.metadata.get("coupon_chaos", {})
        layers = tuple(meta.get("layers", LAYERS))
        params = frozenset(papermill.inspect_notebook(str(path)))
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
        return cls(path, str(meta.get("scenario", path.stem)), layers, params, title)


def discover(directory: Path = NOTEBOOKS_DIR) -> list[Notebook]:
    """Every notebook of ``directory`` (``*.ipynb``, checkpoints excluded), by file name."""
    return [Notebook.load(p) for p in sorted(Path(directory).glob("*.ipynb"))]


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

    @property
    def stem(self) -> str:
        return f"{self.notebook.scenario}-{self.layer}"

    def parameters(self, database_url: str, out_dir: Path) -> dict[str, Any]:
        offered: dict[str, Any] = {
            "seed": self.seed,
            "layer": self.layer,
            "strategy": self.strategy,
            "database_url": database_url,
            "out_dir": str(out_dir),
        }
        return {k: v for k, v in offered.items() if k in self.notebook.parameters}


@dataclass
class JobReport:
    """What one notebook run produced: the entry of ``summary.json`` and its timings."""

    name: str
    layer: str
    strategy: str
    seed: int
    passed: bool = False
    duration_s: float = 0.0
    outcomes: dict[str, dict[str, int]] = field(default_factory=dict)
    checks: list[dict[str, Any]] = field(default_factory=list)
    html: str = ""
    html_no_code: str | None = None
    notebook: str = ""
    error: str | None = None
    #: wall_s = kernel_s (start-up, shutdown, papermill) + cells_s; experiment_s is the
    #: scenario's own duration (part of cells_s); render_s is nbconvert, after wall_s.
    timing: dict[str, float] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if c["passed"] is not True]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "layer": self.layer,
            "strategy": self.strategy,
            "seed": self.seed,
            "passed": self.passed,
            "duration_s": round(self.duration_s, 3),
            "outcomes": self.outcomes,
            "checks": self.checks,
            "html": self.html,
        }
        if self.html_no_code is not None:
            out["html_no_code"] = self.html_no_code
        out.update(notebook=self.notebook, error=self.error, timing=self.timing)
        spread = self.start_spread_ms
        if spread is not None:
            out["start_spread_ms"] = spread
        return out

    @property
    def start_spread_ms(self) -> float | dict[str, float] | None:
        """How far apart the stampede's workers really started (per size for ``scale``)."""
        found = self.summary.get("start_spread_ms", self.summary.get("start_spread_ms_by_size"))
        return found if isinstance(found, int | float | dict) else None


def _execute(job: Job, run_dir: Path, database_url: str, hide_code: bool) -> JobReport:
    try:
        return _execute_in_thread(job, run_dir, database_url, hide_code)
    finally:
        _close_thread_loop()


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


def _execute_in_thread(job: Job, run_dir: Path, database_url: str, hide_code: bool) -> JobReport:
    import nbformat
    import papermill

    report = JobReport(job.notebook.scenario, job.layer, job.strategy, job.seed)
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
            parameters=job.parameters(database_url, data_dir),
            kernel_name=KERNEL,
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
            {"name": c["name"], "passed": c["passed"], "detail": c["detail"]}
            for c in result.get("checks", [])
        ]
        # With a result, each error is a failed assertion: report every one of them.
        report.checks += [{"name": n, "passed": False, "detail": d} for n, d in errors]
    if crash is not None:
        report.error = crash
    elif result is None and errors:
        # Without one, the first error is the crash; the rest are its echoes (NameError).
        report.error = f"{errors[0][1]} ({errors[0][0]})"
    elif result is None and "out_dir" in job.notebook.parameters:
        report.error = "the notebook recorded no result (its last cell did not save one)"
    if report.error is not None:
        report.checks.append({"name": "notebook", "passed": False, "detail": report.error})
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
        _render(nb, run_dir / report.html, job, report, run_dir.name, hide=False)
        if report.html_no_code is not None:
            _render(nb, run_dir / report.html_no_code, job, report, run_dir.name, hide=True)
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
                lines = [s.strip() for s in cell.source.splitlines() if s.strip()]
                # An assertion cell is best named by its assert line.
                first = next(
                    (s for s in lines if s.startswith("assert")), lines[0] if lines else ""
                )
                name = f"cell [{cell.get('execution_count')}] {first[:100]}"
                found.append((name, f"{output.get('ename')}: {output.get('evalue')}".strip()))
                break
    return found


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


# -- render --------------------------------------------------------------------------------

# The lab template, minus everything it would fetch from a CDN (require.js, MathJax,
# mermaid, widgets): the page must open from disk, offline, as one file. A banner on top
# gives the verdict, the counts, the seed and the run at a glance (a reader otherwise
# scrolled to the verdict table to learn whether the run passed).
_TEMPLATE = """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block jupyter_widgets -%}{%- endblock jupyter_widgets -%}
{%- block extra_css -%}<style>
.cc-banner { margin: 0 0 1.5em; padding: .8em 1.2em; border-left: .5em solid; font-size: 15px;
  font-family: system-ui, sans-serif; line-height: 1.5; }
.cc-banner p { margin: .3em 0; }
.cc-banner nav { font-size: 13px; }
.cc-pass { border-color: #1a7f37; background: #eef8f0; }
.cc-fail { border-color: #cf222e; background: #fdeeee; }
.cc-verdict { display: inline-block; padding: 0 .5em; color: #fff; font-weight: bold;
  border-radius: 3px; }
.cc-pass .cc-verdict { background: #1a7f37; }
.cc-fail .cc-verdict { background: #cf222e; text-transform: uppercase; }
.cc-banner ul { margin: .3em 0 0 1.2em; padding: 0; }
.jp-RenderedImage img { max-width: 100%; height: auto; }
</style>{%- endblock extra_css -%}
{%- block body_header -%}{{ super() }}{{ resources.get("banner", "") }}{%- endblock body_header -%}
"""


def render_html(
    nb: Any, path: Path, title: str = "", hide_code: bool = False, banner: str = ""
) -> Path:
    """Write ``nb`` as one self-contained HTML file (images embedded as data URIs).

    ``banner`` is HTML put first in the body (the suite's verdict banner).
    """
    import jinja2
    from nbconvert import HTMLExporter

    exporter = HTMLExporter(  # type: ignore[no-untyped-call]
        template_name="lab",
        template_file="coupon_chaos.html.j2",
        extra_loaders=[jinja2.DictLoader({"coupon_chaos.html.j2": _TEMPLATE})],
        embed_images=True,
        exclude_input=hide_code,
        exclude_input_prompt=hide_code,
        exclude_output_prompt=hide_code,
    )
    if hide_code:
        nb = _without_tracebacks(nb)
    resources = {"metadata": {"name": title}, "banner": banner}
    body, _ = exporter.from_notebook_node(nb, resources=resources)
    path.write_text(body, encoding="utf-8")
    return path


def _without_tracebacks(nb: Any) -> Any:
    """A copy whose error outputs keep their message but not their traceback.

    A traceback quotes the cell's code (the failing ``assert`` line, the frames above
    it): the version for readers keeps only ``AssertionError: expected ..., got ...``.
    """
    import copy

    nb = copy.deepcopy(nb)
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                output["traceback"] = [f"{output.get('ename')}: {output.get('evalue')}"]
    return nb


def _render(nb: Any, path: Path, job: Job, report: JobReport, run_id: str, hide: bool) -> None:
    verdict = "pass" if report.passed else "FAIL"
    title = f"{verdict}: {job.notebook.scenario} ({job.layer}, seed {job.seed})"
    render_html(nb, path, title=title, hide_code=hide, banner=_banner(report, run_id, hide))


def _banner(job: JobReport, run_id: str, hide: bool) -> str:
    esc = html.escape
    verdict = "pass" if job.passed else "FAIL"
    passed = sum(c["passed"] is True for c in job.checks)
    other = job.html if hide else job.html_no_code
    other_link = (
        f' · <a href="{esc(other)}">{"with code" if hide else "without code"}</a>' if other else ""
    )
    failed = "".join(
        f"<li><b>{esc(c['name'])}</b>: {esc(str(c['detail']))}</li>" for c in job.failures
    )
    return (
        f'<header class="cc-banner cc-{verdict.lower()}">'
        f'<nav><a href="index.html">&larr; all scenarios of run {esc(run_id)}</a>{other_link}</nav>'
        f'<p class="cc-head"><span class="cc-verdict">{verdict}</span> '
        f"<b>{esc(job.name)}</b> · layer <b>{esc(job.layer)}</b> · strategy "
        f"<b>{esc(job.strategy)}</b> · seed <b>{job.seed}</b></p>"
        f"<p>{passed} of {len(job.checks)} checks passed · {_outcomes_html(job.outcomes)}"
        f" · experiment {job.timing.get('experiment_s', 0.0):.2f} s"
        f"{_spread_text(job.start_spread_ms)} · run {esc(run_id)}</p>"
        f"{f'<ul>{failed}</ul>' if failed else ''}</header>"
    )


def _outcomes_html(outcomes: dict[str, dict[str, int]]) -> str:
    esc = html.escape
    return " · ".join(
        f"{esc(kind)}: " + ", ".join(f"{esc(r)} <b>{n}</b>" for r, n in by.items())
        for kind, by in outcomes.items()
    )


def _spread_text(spread: float | dict[str, float] | None) -> str:
    if spread is None:
        return ""
    if isinstance(spread, dict):
        return " · start spread " + ", ".join(f"{k}: {v:.1f} ms" for k, v in spread.items())
    return f" · start spread {spread:.1f} ms"


# -- the run -------------------------------------------------------------------------------


@dataclass
class SuiteReport:
    """A whole run: where it landed and what each notebook reported."""

    run_id: str
    run_dir: Path
    seed: int
    started_at: str
    duration_s: float
    jobs: list[JobReport]
    database_s: float = 0.0
    parallel: int = 1
    #: The command that replays this run's plans (same notebooks, layers, strategy, seed).
    rerun: str = ""

    @property
    def passed(self) -> bool:
        return bool(self.jobs) and all(j.passed for j in self.jobs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seed": self.seed,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "scenarios": [j.to_dict() for j in self.jobs],
            "jobs": self.parallel,
            "timing": {
                "database_s": round(self.database_s, 3),
                "kernel_s": round(sum(j.timing.get("kernel_s", 0.0) for j in self.jobs), 3),
                "cells_s": round(sum(j.timing.get("cells_s", 0.0) for j in self.jobs), 3),
                "experiment_s": round(sum(j.timing.get("experiment_s", 0.0) for j in self.jobs), 3),
                "render_s": round(sum(j.timing.get("render_s", 0.0) for j in self.jobs), 3),
            },
        }


#: Called with (None, 0, total) before the first notebook, then once per finished one.
Progress = Callable[[JobReport | None, int, int], None]


def plan_jobs(
    notebooks: Sequence[Notebook],
    scenarios: Sequence[str] | None,
    layers: Sequence[str],
    strategy: str,
    run_seed: int,
) -> list[Job]:
    """The (notebook, layer) pairs to run, in notebook order; unknown names are an error."""
    by_name = {nb.scenario: nb for nb in notebooks}
    if scenarios:
        unknown = [s for s in scenarios if s not in by_name]
        if unknown:
            raise ValueError(f"no notebook for {', '.join(unknown)}; have {', '.join(by_name)}")
        chosen = [nb for nb in notebooks if nb.scenario in set(scenarios)]
    else:
        chosen = list(notebooks)
    return [
        Job(nb, layer, strategy, derive_seed(run_seed, nb.scenario))
        for nb in chosen
        for layer in layers
        if layer in nb.layers
    ]


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
) -> SuiteReport:
    """Run the suite and write ``<out>/<run-id>/``; see the module docstring for the steps."""
    from coupon_core.database import provision

    started_at = datetime.now(UTC)
    t0 = time.perf_counter()
    run_seed = seed if seed is not None else secrets.randbelow(1 << _SEED_BITS)
    notebooks = discover(Path(notebooks_dir).resolve())
    planned = plan_jobs(notebooks, scenarios, layers, strategy, run_seed)
    if not planned:
        raise ValueError(f"nothing to run in {notebooks_dir} for layers {', '.join(layers)}")
    run_id = f"{started_at:%Y%m%dT%H%M%SZ}-{secrets.token_hex(2)}"
    # Absolute: notebooks run with their own folder as working directory.
    out = Path(out).resolve()
    run_dir = out / run_id
    run_dir.mkdir(parents=True)

    db_started = time.perf_counter()
    handle = provision(database_url)
    database_s = time.perf_counter() - db_started
    reports: list[JobReport] = []
    if progress is not None:
        progress(None, 0, len(planned))
    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="nb") as pool:
            futures = {
                pool.submit(_execute, job, run_dir, handle.url, hide_code): job for job in planned
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
        rerun=rerun_command(scenarios, layers, strategy, run_seed),
    )
    (run_dir / "summary.json").write_text(
        json.dumps(report.to_dict(), indent=2, default=str, ensure_ascii=False), encoding="utf-8"
    )
    (run_dir / "index.html").write_text(_index_html(report), encoding="utf-8")
    _point_latest(out, run_id)
    return report


def rerun_command(
    scenarios: Sequence[str] | None, layers: Sequence[str], strategy: str, seed: int
) -> str:
    """``coupon-chaos run ...`` replaying a run: a bare ``--seed`` would run other layers."""
    words = ["coupon-chaos", "run", *(scenarios or ())]
    layer = "both" if set(layers) == set(LAYERS) else ",".join(layers)
    if layer != "service":
        words += ["--layer", layer]
    if strategy != "row_lock":
        words += ["--strategy", strategy]
    return " ".join([*words, "--seed", str(seed)])


def _point_latest(out: Path, run_id: str) -> None:
    # Replace atomically so a reader never sees no link; relative so the tree can move.
    tmp = out / f".latest-{os.getpid()}-{threading.get_ident()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_id, target_is_directory=True)
    os.replace(tmp, out / "latest")


# -- index ---------------------------------------------------------------------------------


def _outcome_png(run_dir: Path, job: JobReport) -> str:
    from experiments import report
    from experiments.history import History

    paths = sorted((run_dir / "data" / f"{job.name}-{job.layer}").glob("*.history.jsonl"))
    if not paths:
        return ""
    try:
        fig = report.outcome_chart(History.load(paths[0]))
    except (OSError, ValueError, KeyError, TypeError):
        return ""  # a history we cannot read: the row says so through its verdict
    # The row already names scenario and layer; at the page's scale a 7.5-inch figure
    # shrunk into its cell left 5-pixel labels, so draw it at the size it is shown.
    fig.axes[0].set_title("")
    fig.set_size_inches(5.0, fig.get_size_inches()[1] * 0.8)
    return report.to_data_uri(fig, dpi=80)


_INDEX_CSS = """
body { font-family: system-ui, sans-serif; margin: 1.5em 2em; color: #1f2328; font-size: 15px; }
h1 { font-size: 1.5em; margin: 0 0 .4em; }
.banner { padding: .8em 1.2em; border-left: .5em solid; margin-bottom: 1em; line-height: 1.5; }
.banner.pass { border-color: #1a7f37; background: #eef8f0; }
.banner.fail { border-color: #cf222e; background: #fdeeee; }
.banner p { margin: .25em 0; }
.big { font-size: 1.4em; font-weight: bold; }
.tag { display: inline-block; padding: 0 .45em; border-radius: 3px; color: #fff;
  font-weight: bold; }
.tag.pass { background: #1a7f37; }
.tag.fail { background: #cf222e; }
table { border-collapse: collapse; width: 100%; }
th { text-align: left; font-size: 13px; color: #59636e; border-bottom: 2px solid #d1d9e0; }
td, th { padding: .45em .6em; vertical-align: top; }
tbody tr { border-bottom: 1px solid #d1d9e0; }
tr.fail { background: #fff5f5; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td ul { margin: .3em 0 0 1em; padding: 0; font-size: 13px; }
.outcomes tr, .outcomes td { padding: 0 .4em 0 0; border: 0; font-size: 13px; }
.outcomes td.n { text-align: right; font-variant-numeric: tabular-nums; }
img { width: 340px; height: auto; display: block; }
code { background: #f6f8fa; padding: 0 .3em; }
small { color: #59636e; }
"""


def _outcomes_cell(outcomes: dict[str, dict[str, int]]) -> str:
    esc = html.escape
    if not outcomes:
        return "<small>no history recorded</small>"
    # The operation kind only on its first line: a column of "claim claim claim" is noise.
    rows = "".join(
        f"<tr><td>{esc(kind) if i == 0 else ''}</td><td>{esc(r)}</td><td class=n>{n}</td></tr>"
        for kind, by in outcomes.items()
        for i, (r, n) in enumerate(by.items())
    )
    return f'<table class="outcomes">{rows}</table>'


def _index_html(suite: SuiteReport) -> str:
    esc = html.escape
    rows = []
    for job in suite.jobs:
        verdict = "pass" if job.passed else "FAIL"
        anchor = f"{job.name}-{job.layer}"
        failed = "".join(
            f"<li><b>{esc(c['name'])}</b>: {esc(str(c['detail']))}</li>" for c in job.failures
        )
        png = _outcome_png(suite.run_dir, job)
        chart = f'<img alt="outcomes of {esc(anchor)}" src="{png}">' if png else ""
        links = f'<a href="{esc(job.html)}">report</a>' if job.html else "(no report)"
        if job.html_no_code:
            links += f'<br><a href="{esc(job.html_no_code)}">without code</a>'
        n_ok = sum(c["passed"] is True for c in job.checks)
        spread = job.start_spread_ms
        spread_text = (
            "<br>".join(f"{k}: {v:.1f}" for k, v in spread.items())
            if isinstance(spread, dict)
            else ("" if spread is None else f"{spread:.1f}")
        )
        rows.append(
            f'<tr id="{esc(anchor)}" class="{verdict.lower()}">'
            f'<td><span class="tag {verdict.lower()}">{verdict}</span></td>'
            f"<td><b>{esc(job.name)}</b><br>{esc(job.layer)} · {esc(job.strategy)}"
            f"{f'<ul>{failed}</ul>' if failed else ''}</td>"
            f"<td class=num>{n_ok} / {len(job.checks)}</td>"
            f"<td>{_outcomes_cell(job.outcomes)}</td>"
            f"<td class=num>{job.duration_s:.1f} s<br>"
            f"<small>experiment {job.timing.get('experiment_s', 0):.2f} s</small></td>"
            f"<td class=num>{spread_text}</td>"
            f"<td class=num>{job.seed}</td><td>{links}</td><td>{chart}</td></tr>"
        )
    n_pass = sum(j.passed for j in suite.jobs)
    verdict = "pass" if suite.passed else "FAIL"
    failed_links = ", ".join(
        f'<a href="#{esc(j.name)}-{esc(j.layer)}">{esc(j.name)} [{esc(j.layer)}]</a>'
        for j in suite.jobs
        if not j.passed
    )
    timing = suite.to_dict()["timing"]
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{verdict}: coupon chaos lab, run {esc(suite.run_id)}</title>
<style>{_INDEX_CSS}</style></head><body>
<h1>Coupon chaos lab · run {esc(suite.run_id)}</h1>
<div class="banner {verdict.lower()}">
<p class="big"><span class="tag {verdict.lower()}">{verdict}</span>
{n_pass} of {len(suite.jobs)} notebooks passed</p>
{f"<p>Failed: {failed_links}</p>" if failed_links else ""}
<p>Run seed <b>{suite.seed}</b> (each scenario's seed derives from it; replay with
<code>{esc(suite.rerun or f"coupon-chaos run --seed {suite.seed}")}</code>) · started {esc(suite.started_at)}
· {suite.duration_s:.1f} s, {suite.parallel} notebook(s) at a time</p>
<p><small>Summed over notebooks: kernel start-up and shutdown {timing["kernel_s"]:.1f} s,
cells {timing["cells_s"]:.1f} s (of which experiments {timing["experiment_s"]:.1f} s),
rendering {timing["render_s"]:.1f} s; database start {timing["database_s"]:.1f} s.</small></p>
</div>
<table><thead><tr><th>verdict</th><th>scenario</th><th>checks passed</th><th>outcomes</th>
<th>duration</th><th>start spread (ms)</th><th>seed</th><th>report</th>
<th>outcome chart</th></tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>
<p><a href="summary.json">summary.json</a></p>
</body></html>
"""


# -- progress ------------------------------------------------------------------------------


def line(job: JobReport) -> str:
    """One plain line for a finished notebook."""
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
