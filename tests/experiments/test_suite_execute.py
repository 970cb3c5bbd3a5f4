"""A notebook's bound, and a kernel that ignores SIGINT is killed after the grace."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import pytest

from experiments import suite
from experiments.scenarios import SCENARIOS
from experiments.suite.execute import Kernel, Kernels, notebook_bound


def _job(scenario: str, defaults: dict[str, str], overrides: dict[str, object]) -> suite.Job:
    nb = suite.Notebook(
        Path(f"{scenario}.ipynb"), scenario, ("service",), frozenset(), "", defaults
    )
    return suite.Job(nb, "service", "row_lock", 1, tuple(overrides.items()))


def test_a_notebook_is_bounded_by_its_scenarios_run_bound_and_a_margin() -> None:
    margin = suite.execute.NOTEBOOK_MARGIN_S
    factor = suite.execute.RUN_BOUND_FACTOR
    # The registry's default (60 s), a -p value, the notebook's own parameter.
    assert notebook_bound(_job("flash_sale", {}, {})) == factor * 60 + margin
    assert notebook_bound(_job("flash_sale", {}, {"run_timeout_s": 5.0})) == factor * 5 + margin
    assert notebook_bound(_job("tiny", {"run_timeout_s": "2.0"}, {})) == factor * 2 + margin
    # Neither a scenario nor a bound of its own (sweep, detection): the per-cell bound only.
    assert notebook_bound(_job("sweep", {}, {})) is None


def test_a_scenario_of_many_runs_is_bounded_by_all_of_them() -> None:
    # Before: isolation at 20 seeds (15 cells, 300 pipeline runs, 474 s over HTTP) had
    # the 3 x 60 s + margin of one stampede, and its notebook was stopped mid-run.
    margin = suite.execute.NOTEBOOK_MARGIN_S
    assert suite.execute.RUN_BOUND_FACTOR < 15 * 3
    assert notebook_bound(_job("isolation", {"seeds": "3"}, {})) == 15 * 3 * 60 + margin
    assert notebook_bound(_job("isolation", {"seeds": "3"}, {"seeds": 20})) == 300 * 60 + margin
    one = "campaign/naive/read_committed"
    assert (
        notebook_bound(_job("isolation", {}, {"seeds": 2, "cells": one, "run_timeout_s": 10.0}))
        == max(suite.execute.RUN_BOUND_FACTOR, 2) * 10 + margin
    )


def test_a_value_the_scenario_refuses_leaves_the_bound_of_one_run_a_lab_bug_is_raised(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    margin = suite.execute.NOTEBOOK_MARGIN_S
    factor = suite.execute.RUN_BOUND_FACTOR
    # A cell name isolation does not have is the notebook's to refuse, in its first cell.
    bad = _job("isolation", {}, {"cells": "no/such/cell", "run_timeout_s": 10.0})
    assert notebook_bound(bad) == factor * 10 + margin

    # An error of the lab's own in counting the runs is not swallowed.
    def broken(spec: object) -> int:
        raise KeyError("seeds")

    monkeypatch.setitem(
        SCENARIOS, "isolation", dataclasses.replace(SCENARIOS["isolation"], runs=broken)
    )
    with pytest.raises(KeyError):
        notebook_bound(_job("isolation", {}, {"run_timeout_s": 10.0}))


def test_a_kernel_deaf_to_sigint_is_killed_after_the_grace() -> None:
    deaf = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import signal, time\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
            "print('ready', flush=True)\ntime.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        assert deaf.stdout is not None
        assert deaf.stdout.readline() == "ready\n"
        kernel = Kernel()
        kernel.attach(deaf.pid, deaf.pid)
        kernels = Kernels()
        kernels.add(kernel)
        t0 = time.monotonic()
        kernels.stop_all(grace_s=0.5)
        assert deaf.wait(10) == -9
        assert 0.5 <= time.monotonic() - t0 < 5
        assert kernel.reason == "interrupted"
        # A kernel that starts once the run is stopping is stopped at once.
        late = Kernel()
        kernels.add(late)
        assert late.reason == "interrupted"
    finally:
        if deaf.poll() is None:
            deaf.kill()
        deaf.communicate(timeout=10)
