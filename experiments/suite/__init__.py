"""The suite: run the notebooks headless against one database, render them, write the index.

One run is one pipeline of named steps (as papermill's ``execute`` reads), one module each:

    discover   notebooks/*.ipynb; a notebook names its scenario and the layers it supports
               in its metadata (``{"coupon_chaos": {"scenario": ..., "layers": [...]}}``;
               without it: the file stem, both layers). Adding a notebook is adding a file.
               A run seed (given or drawn): a run of one notebook uses it as it is, a run
               of several derives each scenario's seed from it and the scenario name, so
               both layers of a scenario run the same plan; each job records the command
               that replays exactly its plan (``Job.rerun``).
    provision  (``orchestrate``) one database for the whole run
               (``coupon_core.database.provision``), unless a URL is given; its URL goes
               to every kernel in its environment (``DATABASE_URL``), never as a
               parameter: an injected literal would put a password into the executed
               notebook and its HTML (see "Secrets" below). The run's folder is made only
               once the database answers: a refused run leaves nothing behind.
    execute    papermill, kernel ``python3``, immediate kernel shutdown; every cell runs
               (``allow_errors``) so the record cell saves the result. A notebook past its
               bound (its scenario's run bound, with a margin) is stopped and reported
               "timed out"; the others go on. Each notebook has a fresh kernel of its
               own, started ahead of need with the lab imported (``kernels``).
    schedule   up to ``jobs`` notebooks at once (default: one per two cores); those
               that cannot share the machine (a fault's bounds in seconds, a cluster or
               database process of their own, no registered scenario) run alone. A
               notebook's pages render while the next one runs.
    judge      a notebook that records a Result is judged by it (``Result.load``): its
               status (pass, FAIL, unknown, no_experiment, skipped) and its checks, never
               the assertion cells that restate them; others by their assertion cells.
    record     each executed notebook to one self-contained HTML file (nbconvert, images
               as data URIs); ``summary.json`` and ``index.html`` in ``results/<run-id>/``,
               with ``compare.html`` against the previous run when there is one, and
               ``results/latest`` pointing at the run.
    progress   one console line per finished notebook.

Interrupted (SIGINT or SIGTERM, both a KeyboardInterrupt from the CLI): every kernel is
stopped, the database closed, and the run recorded with the status ``interrupted``.

The pages themselves are drawn by ``experiments.suite_html``; what a run reports is
``experiments.suite_report``.

Secrets: nothing a run writes or prints holds the database password. The URL reaches
the kernels through their environment only; ``summary.json`` and the index name it
redacted (``coupon_core.redact``); the rerun command reads it from ``$DATABASE_URL``.
"""

from __future__ import annotations

from experiments.suite import execute, judge, progress, record
from experiments.suite.discover import (
    LAYERS,
    NOTEBOOKS_DIR,
    Job,
    Notebook,
    derive_seed,
    discover,
    plan_jobs,
    rerun_command,
    scenario_layers,
)
from experiments.suite.execute import CELL_TIMEOUT_S, KERNEL, notebook_bound
from experiments.suite.orchestrate import run_suite
from experiments.suite.progress import Console, Progress, Started, line, progress_reporter
from experiments.suite.schedule import alone_reason, default_jobs

__all__ = [
    "CELL_TIMEOUT_S",
    "KERNEL",
    "LAYERS",
    "NOTEBOOKS_DIR",
    "Console",
    "Job",
    "Notebook",
    "Progress",
    "Started",
    "alone_reason",
    "default_jobs",
    "derive_seed",
    "discover",
    "execute",
    "judge",
    "line",
    "notebook_bound",
    "plan_jobs",
    "progress",
    "progress_reporter",
    "record",
    "rerun_command",
    "run_suite",
    "scenario_layers",
]
