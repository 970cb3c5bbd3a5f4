"""What a run leaves: each notebook's pages, ``summary.json``, ``index.html``, the comparison
with the previous run, and ``results/latest`` pointing at it (the pages themselves are
drawn by ``experiments.suite_html``).

A run made without a notebook (``coupon-chaos locust``: one Result) leaves the same folder
through ``record_result``: its Result under ``data/<scenario>-<layer>/``, its page drawn
from the Result's tables and charts, and the run's records as above; ``runs``, ``open``
and ``compare`` read it as any run.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from experiments import compare, suite_html
from experiments.result import Result
from experiments.suite import judge
from experiments.suite_report import JobReport, SuiteReport

__all__ = ["point_latest", "record_result", "record_run", "render_failed", "render_pages"]


def render_pages(nb: Any, report: JobReport, run_dir: Path, hide_code: bool) -> None:
    """The job's report page (and its version without code) under its verdict banner."""
    stem = f"{report.name}-{report.layer}"
    t0 = time.perf_counter()
    report.html = f"{stem}.html"
    if hide_code:
        report.html_no_code = f"{stem}.nocode.html"
    suite_html.render_job(nb, run_dir / report.html, report, run_dir.name, hide=False)
    if report.html_no_code is not None:
        suite_html.render_job(nb, run_dir / report.html_no_code, report, run_dir.name, hide=True)
    report.timing["render_s"] = round(time.perf_counter() - t0, 3)


def render_failed(report: JobReport, err: BaseException) -> None:
    """A page that would not render fails its notebook, and says why; the run goes on.

    As a chart that would not draw fails it (``judge``): a report missing a page is not
    a passed report. The index then shows "(no report)" for it, never a dead link.
    """
    detail = f"its report page was not written: {type(err).__name__}: {err}"
    report.html, report.html_no_code = "", None
    report.checks.insert(0, {"name": "report page", "passed": False, "detail": detail})
    report.error = detail if report.error is None else f"{report.error}; {detail}"
    if report.status == "pass":
        report.status = "FAIL"
    report.passed = False


def record_run(report: SuiteReport, out: Path) -> None:
    """``summary.json``, ``compare.html`` (against the previous run), ``index.html``, latest."""
    run_dir = report.run_dir
    previous = compare.previous_run(out, report.run_id)
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
    point_latest(out, report.run_id)


def point_latest(out: Path, run_id: str) -> None:
    """``out/latest`` -> ``run_id``, replaced atomically, relative (the tree can move)."""
    tmp = out / f".latest-{os.getpid()}-{threading.get_ident()}"
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    tmp.symlink_to(run_id, target_is_directory=True)
    os.replace(tmp, out / "latest")


def record_result(
    result: Result,
    out: Path,
    run_id: str,
    *,
    started_at: str,
    duration_s: float,
    rerun: str,
    parameters: dict[str, Any],
    database: str,
    save_more: Callable[[Path], Sequence[Path]] | None = None,
) -> SuiteReport:
    """Record ``result`` as the one scenario of run ``run_id`` in ``out`` (its folder may
    hold the run's own files already), judged as a notebook's Result is (``judge``).

    ``save_more`` writes further files into the Result's data folder and returns their
    paths, which the page links (Locust's own report). ``rerun`` replays the run;
    ``parameters`` are those set with ``-p``; ``database`` is "embedded" or a redacted URL.
    """
    run_dir = out / run_id
    stem = f"{result.scenario}-{result.layer}"
    data_dir = run_dir / "data" / stem
    result.save(data_dir)
    more = list(save_more(data_dir)) if save_more is not None else []
    job = JobReport(result.scenario, result.layer, result.strategy, result.seed)
    judge.judge(job, None, result, records=True, crash=None)
    job.rerun, job.parameters, job.duration_s = rerun, dict(parameters), duration_s
    job.timing = {
        "wall_s": round(duration_s, 3),
        "kernel_s": 0.0,
        "cells_s": 0.0,
        "experiment_s": round(result.duration_s, 3),
    }
    try:
        page = _result_notebook(result, [p.relative_to(run_dir).as_posix() for p in more])
        render_pages(page, job, run_dir, hide_code=False)
    except Exception as err:  # a page that would not draw fails the run, and says why
        render_failed(job, err)
    report = SuiteReport(
        run_id=run_id,
        run_dir=run_dir,
        seed=result.seed,
        started_at=started_at,
        duration_s=duration_s,
        jobs=[job],
        jobs_are="runs",
        rerun=rerun,
        database=database,
    )
    record_run(report, out)
    return report


def _result_notebook(result: Result, links: Sequence[str]) -> Any:
    """A Result's page as a notebook of markdown cells only (no code to show): what a
    scenario's notebook shows, its tables and charts, drawn here, with ``links``."""
    import html

    import nbformat as _nbformat

    from experiments import report

    nbformat: Any = _nbformat  # untyped: one Any here, not an ignore at each call

    witnesses = next(
        (v.figures.get("witness_op_ids") for v in result.verdicts if v.name == "linearizable"),
        None,
    )
    charts = (
        report.outcome_chart(result),
        report.latency_ecdf(result, by="phase"),
        report.latency_over_time(result),
        report.timeline(result, highlight=witnesses),
    )
    md = nbformat.v4.new_markdown_cell
    files = "".join(f'<li><a href="{html.escape(p)}">{html.escape(p)}</a></li>' for p in links)
    cells = [
        md(f"# {html.escape(result.scenario)}"),
        md(f"## Verdicts\n\n{report.verdict_table(result)._repr_html_()}"),
        md(f"## Run\n\n{report.summary_table(result)._repr_html_()}"),
        md(f"## Outcomes\n\n{report.outcome_table(result)._repr_html_()}"),
        *(md(f'<img alt="chart" src="{report.to_data_uri(fig)}">') for fig in charts),
    ]
    if files:
        cells.append(md(f"## Files\n\n<ul>{files}</ul>"))
    return nbformat.v4.new_notebook(cells=cells)
