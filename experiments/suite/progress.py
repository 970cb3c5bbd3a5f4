"""A run's progress on the console: one line per finished notebook (a bar on a terminal)."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Any

from experiments.suite_report import JobReport

__all__ = ["Progress", "line", "progress_reporter"]

#: Called with (None, 0, total) before the first notebook, then once per finished one.
Progress = Callable[[JobReport | None, int, int], None]

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
    word = _WORDS.get(job.status, job.status)
    n_skipped = len(job.skipped_checks)
    if n_skipped:
        word += f", {n_skipped} skipped"
    drawn = f"; {job.drawn_again}" if job.drawn_again else ""
    return (
        f"{job.name} [{job.layer}] {word} in {job.duration_s:.1f} s "
        f"(experiment {job.timing.get('experiment_s', 0.0):.1f} s, seed {job.seed}{drawn})"
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
