"""The suite's engine and render step with real kernels on tiny generated notebooks.

Each notebook here is a few lines of plain Python (no database, no lab import), run by
``experiments.suite.execute.execute`` as the suite runs one: papermill with the suite's
engine, on a kernel of ``WarmKernels`` (no preload, so each starts in about a second).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import nbformat as _nbformat
import papermill
import psutil
import pytest

from experiments.suite import discover, plan_jobs
from experiments.suite.execute import INTERRUPTED, Against, Kernels, _close_thread_loop, execute
from experiments.suite.kernels import WarmKernels

nbformat: Any = _nbformat

pytestmark = pytest.mark.slow  # real kernels: 2-8 s a test on a loaded machine


def _notebook(folder: Path, name: str, *cells: str) -> Path:
    nb: Any = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["coupon_chaos"] = {"scenario": name, "layers": ["service"]}
    params = nbformat.v4.new_code_cell("seed = None")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {name}"), params]
    nb.cells += [nbformat.v4.new_code_cell(c) for c in cells]
    path = folder / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


def _run(folder: Path, run_dir: Path, kernels: Kernels | None = None, warm: Any = None) -> Any:
    """The one notebook of ``folder`` as the suite runs it; its JobReport.

    ``warm``: kernels the caller made and closes (as the suite's main thread does);
    else some made and closed here.
    """
    (job,) = plan_jobs(discover(folder), None, ("service",), "row_lock", 7)
    own = warm is None
    warm = WarmKernels({}, folder, depth=1, preload=()) if own else warm
    try:
        return execute(job, run_dir, Against(None), False, kernels or Kernels(), warm=warm)
    finally:
        if own:
            warm.close()


def _executed(run_dir: Path, name: str) -> Any:
    return nbformat.read(run_dir / "notebooks" / f"{name}-service.ipynb", as_version=4)


def _printed(cell: Any) -> str:
    return "".join(o.get("text", "") for o in cell.outputs).strip()


def _code(nb: Any) -> list[Any]:
    """The notebook's own code cells: not its parameters, not papermill's injected ones."""
    tags = ("parameters", "injected-parameters")
    return [
        c
        for c in nb.cells
        if c.cell_type == "code" and not set(c.metadata.get("tags", [])) & set(tags)
    ]


def test_a_failing_cell_fails_the_notebook_and_the_report_quotes_it(tmp_path: Path) -> None:
    # Plant: the engine (or the judge) reading only assertion cells, or papermill's
    # error swallowed with nothing read back from the notebook, reports "pass".
    folder = tmp_path / "nb"
    folder.mkdir()
    _notebook(folder, "crashy", "x = 1", 'raise RuntimeError("boom in the second cell")', "y = 2")
    report = _run(folder, tmp_path / "run")
    assert report.status == "FAIL"
    assert not report.passed
    assert report.error == (
        'RuntimeError: boom in the second cell (cell [4] raise RuntimeError("boom in the second'
        ' cell"))'
    )
    assert report.checks[0] == {"name": "notebook", "passed": False, "detail": report.error}
    # Every cell ran (allow_errors): the one after the crash too.
    assert [c.execution_count for c in _code(_executed(tmp_path / "run", "crashy"))] == [3, 4, 5]
    assert (tmp_path / "run" / report.html).exists()


def test_the_executed_notebook_is_written_once_when_it_ends(tmp_path: Path) -> None:
    # Each cell prints whether the executed notebook exists yet, from inside the kernel.
    # Plant (shown below): papermill's own engine writes it after every cell.
    folder = tmp_path / "nb"
    folder.mkdir()
    executed = tmp_path / "run" / "notebooks" / "probe-service.ipynb"
    probe = f"import os; print(os.path.exists({str(executed)!r}))"
    _notebook(folder, "probe", probe, probe, probe)
    report = _run(folder, tmp_path / "run")
    assert report.status == "pass", report.checks
    said = [_printed(c) for c in _code(_executed(tmp_path / "run", "probe"))]
    assert said == ["False", "False", "False"]

    # The probe can fail: papermill's default engine writes the file after each cell.
    control = tmp_path / "control.ipynb"
    own = f"import os; print(os.path.exists({str(control)!r}))"
    try:
        papermill.execute_notebook(
            str(_notebook(tmp_path, "control_in", own, own)),
            str(control),
            kernel_name="python3",
            progress_bar=False,
        )
    finally:
        _close_thread_loop()  # nbclient's loop for this thread, as the suite closes its own
    said = [_printed(c) for c in _code(nbformat.read(control, as_version=4))]
    assert said == ["True", "True"]


def test_an_interrupted_notebook_leaves_a_clear_partial_state(tmp_path: Path) -> None:
    # Plant: ``before_cell`` not raising lets the third cell run ("three" printed);
    # ``notebook_complete`` out of the ``finally`` leaves no executed notebook at all.
    folder = tmp_path / "nb"
    folder.mkdir()
    started = tmp_path / "sleeping"
    _notebook(
        folder,
        "stopped",
        'print("one")',
        f"import pathlib, time\npathlib.Path({str(started)!r}).touch()\ntime.sleep(60)",
        'print("three")',
    )
    kernels = Kernels()
    out: list[Any] = []
    warm = WarmKernels({}, folder, depth=1, preload=())
    thread = threading.Thread(
        target=lambda: out.append(_run(folder, tmp_path / "run", kernels, warm))
    )
    thread.start()
    deadline = time.monotonic() + 60
    while not started.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert started.exists(), "the sleeping cell never started"
    pids = [k.pid for k in kernels._live]
    t0 = time.monotonic()
    kernels.stop_all(INTERRUPTED, grace_s=10)
    thread.join(30)
    warm.close()
    assert out, "execute did not return after the interrupt"
    assert time.monotonic() - t0 < 15
    report = out[0]
    assert report.status == "interrupted"
    assert not report.passed
    assert report.error == INTERRUPTED
    assert report.html == ""  # an interrupted run ends at once: kept, not rendered
    one, sleep, three = _code(_executed(tmp_path / "run", "stopped"))
    assert "".join(o.text for o in one.outputs) == "one\n"
    assert [o.ename for o in sleep.outputs if o.output_type == "error"] == ["KeyboardInterrupt"]
    assert three.execution_count is None
    assert three.outputs == []
    for pid in pids:
        assert pid is not None
        assert not _alive(pid)


def test_a_page_that_fails_to_render_is_reported_and_the_run_goes_on(tmp_path: Path) -> None:
    # The page's path is taken by a folder: nbconvert's page cannot be written.
    # Plant: the render error caught and dropped (``except Exception: pass``) reports a
    # pass with a page that does not exist; the code before this test let it escape
    # the worker thread and end the whole run with no summary.
    folder = tmp_path / "nb"
    folder.mkdir()
    _notebook(folder, "fine", "assert 1 + 1 == 2")
    run_dir = tmp_path / "run"
    (run_dir / "fine-service.html").mkdir(parents=True)
    report = _run(folder, run_dir)
    assert report.status == "FAIL"
    assert not report.passed
    assert report.checks[0]["name"] == "report page"
    assert "IsADirectoryError" in report.checks[0]["detail"]
    assert report.error == report.checks[0]["detail"]
    assert report.html == ""
    # The notebook's own check is still there, passed: the failure is the page's alone.
    assert [c["passed"] for c in report.checks[1:]] == [True]


def _alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
