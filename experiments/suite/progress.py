"""A run's progress on the console: a line as each notebook starts (with its bound) and one
as it finishes (with its status); a bar on a terminal."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from experiments.figures import check_words
from experiments.suite.discover import Job
from experiments.suite_report import JobReport

__all__ = ["Console", "Progress", "Started", "line", "progress_reporter", "start_line"]

#: Called with (None, 0, total) before the first notebook, then once per finished one.
Progress = Callable[[JobReport | None, int, int], None]
#: Called as a notebook starts, with its bound in seconds (None: the per-cell one only).
Started = Callable[[Job, float | None], None]


@dataclass(frozen=True)
class Console:
    """What ``progress_reporter`` gives ``run_suite``: its ``progress`` and ``on_start``."""

    finished: Progress
    started: Started


_WORDS = {
    "pass": "passed",
    "FAIL": "FAILED",
    "unknown": "UNKNOWN (never a pass)",
    "no_experiment": "not an experiment",
    "interrupted": "interrupted",
}


def line(job: JobReport) -> str:
    """One plain line for a finished notebook: its status, skipped checks, attempts."""
    if job.skipped is not None:
        return f"{job.name} [{job.layer}] skipped: {job.skipped}"
    word = check_words(_WORDS.get(job.status, job.status), job.checks)
    drawn = f"; {job.drawn_again}" if job.drawn_again else ""
    return (
        f"{job.name} [{job.layer}] {word} in {job.duration_s:.1f} s "
        f"(experiment {job.timing.get('experiment_s', 0.0):.1f} s, seed {job.seed}{drawn})"
    )


def start_line(job: Job, bound_s: float | None) -> str:
    """One plain line for a notebook that starts: a long run is not a silent one."""
    bound = "" if bound_s is None else f"; stopped if still running after {bound_s:g} s"
    return f"{job.notebook.scenario} [{job.layer}] started{bound}"


@contextlib.contextmanager
def progress_reporter() -> Iterator[Console]:
    """A bar on a terminal, plain lines otherwise (CI logs keep every line)."""
    if not sys.stderr.isatty():

        def plain(job: JobReport | None, done: int, total: int) -> None:
            if job is None:
                print(f"running {total} notebooks", flush=True)
                return
            print(f"[{done}/{total}] {line(job)}", flush=True)

        def plain_start(job: Job, bound_s: float | None) -> None:
            print(start_line(job, bound_s), flush=True)

        yield Console(plain, plain_start)
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

    def fancy_start(job: Job, bound_s: float | None) -> None:
        if bar is not None:
            bar.write(start_line(job, bound_s))

    try:
        yield Console(fancy, fancy_start)
    finally:
        if bar is not None:
            bar.close()
