"""What a notebook run says: its Result's status and checks, else its assertion cells.

A notebook that records a Result (it takes ``out_dir``) is judged by that Result,
read back with ``Result.load``: its checks are the report's checks, its status the
report's status. Its assertion cells restate those checks (``assert check.passed``,
``assert result.passed``): their errors are echoes, not further checks, while the
Result tells of a failure. Only when the Result passed (or skipped every check) does
a failed assertion say something the checks did not; then it is a check of its own
and the notebook fails. An error outside the assertion cells (a crash, a chart that
would not draw) is the notebook's error, reported first, and fails it.

A notebook that records no Result (sweep, strategies, detection, performance) is
judged by its assertion cells, one check each.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from experiments.result import Result
from experiments.suite_report import JobReport

__all__ = ["CellError", "assertion_checks", "cell_errors", "cells_duration", "judge", "load_result"]


@dataclass(frozen=True)
class CellError:
    """A code cell that ended in an error output."""

    name: str
    detail: str
    #: The cell holds an ``assert``: an expectation, not a crash.
    asserts: bool


def load_result(data_dir: Path) -> Result | None:
    """The Result a notebook saved into ``data_dir``; None when it saved none we can read."""
    for path in sorted(data_dir.glob("*.result.json")):
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            return Result.load(path)
    return None


def judge(
    report: JobReport, nb: Any | None, result: Result | None, *, records: bool, crash: str | None
) -> None:
    """Fill ``report``'s checks, error, status and figures from the notebook and its Result.

    ``records``: the notebook is one that records a Result; ``crash``: why its execution
    stopped (the kernel died, it ran past its bound), if it did.
    """
    errors = cell_errors(nb) if nb is not None else []
    outside = [e for e in errors if not e.asserts]
    status: str
    if result is not None:
        report.outcomes = result.outcomes()
        report.summary = result.summary
        report.checks = [_check(v.to_dict()) for v in result.verdicts]
        report.attempts = [a.to_dict() for a in result.attempts]
        status = result.status
        if status in ("pass", "skipped"):
            # The checks passed, yet an expectation of the notebook's own failed.
            failed = [e for e in errors if e.asserts]
            report.checks += [{"name": e.name, "passed": False, "detail": e.detail} for e in failed]
            status = "FAIL" if failed else status
    elif nb is not None and not records:
        report.checks = assertion_checks(nb)
        status = "FAIL" if report.failures else "pass"
    else:
        status = "FAIL"
    if crash is not None:
        report.error = crash
    elif outside:
        report.error = f"{outside[0].detail} ({outside[0].name})"
    elif result is None and records:
        report.error = "the notebook recorded no result (its last cell did not save one)"
    if report.error is not None:
        report.checks.insert(0, {"name": "notebook", "passed": False, "detail": report.error})
        status = "FAIL"
    if status == "skipped" and result is not None:
        # The scenario itself said it cannot run here (a target it cannot serve).
        reason = result.summary.get("skipped") or next(
            (c["detail"] for c in report.checks if c.get("skipped")), "no check could run"
        )
        report.skipped = str(reason)
    report.status = status  # type: ignore[assignment]
    report.passed = status == "pass"


def _check(verdict: dict[str, Any]) -> dict[str, Any]:
    """A verdict as the report lists it: its figures stay in the Result's file."""
    out = {k: verdict[k] for k in ("name", "passed", "detail")}
    out.update({k: True for k in ("skipped", "validity") if verdict.get(k)})
    if verdict.get("finding") is not None:
        out["finding"] = verdict["finding"]  # a known-unsafe configuration caught: no FAIL
    return out


def cell_errors(nb: Any) -> list[CellError]:
    """Each code cell with an error output, in order."""
    found = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for output in cell.get("outputs", []):
            if output.get("output_type") == "error":
                detail = f"{output.get('ename')}: {output.get('evalue')}".strip()
                found.append(CellError(_cell_name(cell), detail, _asserts(cell)))
                break
    return found


def _asserts(cell: Any) -> bool:
    return any(line.strip().startswith("assert") for line in cell.source.splitlines())


def _cell_name(cell: Any) -> str:
    """A code cell's name in a report: its execution count and its assert line (or first)."""
    lines = [s.strip() for s in cell.source.splitlines() if s.strip()]
    first = next((s for s in lines if s.startswith("assert")), lines[0] if lines else "")
    return f"cell [{cell.get('execution_count')}] {first[:100]}"


def assertion_checks(nb: Any) -> list[dict[str, Any]]:
    """One check per code cell holding an ``assert``: passed when it ran without error."""
    checks = []
    for cell in nb.cells:
        if cell.cell_type != "code" or not _asserts(cell):
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


def cells_duration(nb: Any) -> float:
    """Seconds the cells took, as papermill recorded them."""
    total = 0.0
    for cell in nb.cells:
        duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
        if isinstance(duration, int | float):
            total += float(duration)
    return total
