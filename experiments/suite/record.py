"""What a run leaves: each notebook's pages, ``summary.json``, ``index.html``, the comparison
with the previous run, and ``results/latest`` pointing at it (the pages themselves are
drawn by ``experiments.suite_html``)."""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from experiments import compare, suite_html
from experiments.suite_report import JobReport, SuiteReport

__all__ = ["point_latest", "record_run", "render_failed", "render_pages"]


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
