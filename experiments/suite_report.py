"""The suite's records: what each notebook run reported, and the whole run (``summary.json``).

A notebook's ``status`` is its Result's (``experiments.result``: pass, FAIL, unknown,
no_experiment, skipped), FAIL for a notebook that crashed or ran past its bound, or
``interrupted`` (the run was stopped by a signal before it finished).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from experiments import figures

__all__ = ["LABELS", "JobReport", "Status", "SuiteReport", "run_status"]

Status = Literal["pass", "FAIL", "unknown", "no_experiment", "skipped", "interrupted"]
#: How a status reads on the console and the pages (one definition: ``figures.LABELS``).
LABELS: dict[str, str] = figures.LABELS
#: The first of these a run holds is the run's status (after ``interrupted``).
_PRECEDENCE: tuple[Status, ...] = ("FAIL", "unknown", "no_experiment", "pass")


@dataclass
class JobReport:
    """What one notebook run produced: the entry of ``summary.json`` and its timings."""

    name: str
    layer: str
    strategy: str
    seed: int
    passed: bool = False
    #: pass / FAIL / unknown / no_experiment / skipped / interrupted (see the module).
    status: Status = "FAIL"
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
    #: The command that replays exactly this notebook's plan (scenario, layer, seed, -p).
    rerun: str = ""
    #: The parameters set with ``-p`` for this notebook.
    parameters: dict[str, Any] = field(default_factory=dict)
    #: Why the notebook was not run at all (a scenario the target cannot serve).
    skipped: str | None = None
    #: Every attempt of a redrawn run (``Attempt.to_dict``), the last one included.
    attempts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def label(self) -> str:
        """The status as it reads: ``not an experiment``, ``1 passed, 2 skipped``, ..."""
        counts = figures.check_counts(self.checks)
        return figures.run_label(self.status, counts["passed"], counts["skipped"], 0)

    @property
    def badge(self) -> str:
        """The CSS class of its badge: a pass with skipped checks is not green."""
        return figures.run_badge(self.status, len(self.skipped_checks), 0)

    @property
    def drawn_again(self) -> str:
        """``drawn again 2x: peaks 1, 2 of 8`` for a run drawn again; empty otherwise."""
        aside = self.attempts[:-1]
        if not aside:
            return ""
        peaks = [_attempt_figure(a, "peak_in_flight") for a in aside]
        workers = next((w for a in aside if (w := _attempt_figure(a, "workers")) is not None), None)
        shown = ", ".join("?" if p is None else str(p) for p in peaks)
        return f"drawn again {len(aside)}x: peaks {shown}" + (
            f" of {workers}" if workers is not None else ""
        )

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Checks that ran and did not pass (skipped ones are neither passed nor failed)."""
        return [c for c in self.checks if c["passed"] is not True and not c.get("skipped")]

    @property
    def skipped_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if c.get("skipped")]

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "layer": self.layer,
            "strategy": self.strategy,
            "seed": self.seed,
            "passed": self.passed,
            "status": self.status,
            "skipped": self.skipped,
            "checks_skipped": len(self.skipped_checks),
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
        out.update(self.collision)
        out.update(rerun=self.rerun, parameters=self.parameters, figures=self.figures)
        out["attempts"] = self.attempts
        return out

    @property
    def collision(self) -> dict[str, Any]:
        """Beside the spread, whether the ops overlapped: peak in flight and the share of
        ops that overlapped the winner (per size for ``scale``); empty when not recorded."""
        out: dict[str, Any] = {}
        for key in ("peak_in_flight", "overlap_with_winner"):
            found = self.summary.get(key, self.summary.get(f"{key}_by_size"))
            if isinstance(found, int | float | dict):
                out[key] = found
        return out

    @property
    def figures(self) -> dict[str, Any]:
        """What a comparison of two runs reads: latency quantiles (ms) and throughput."""
        keep = ("throughput_ops_s", "latency", "latency_ok", "wall_s", "ops")
        return {k: self.summary[k] for k in keep if self.summary.get(k) is not None}

    @property
    def start_spread_ms(self) -> float | dict[str, float] | None:
        """How far apart the stampede's workers really started (per size for ``scale``)."""
        found = self.summary.get("start_spread_ms", self.summary.get("start_spread_ms_by_size"))
        return found if isinstance(found, int | float | dict) else None


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
    #: Where the database was: "embedded", or its URL with the password as ``***``.
    database: str = ""
    #: The run before this one in the same results folder (``compare.html`` compares them).
    previous: str | None = None
    #: The signal that stopped the run (``SIGTERM``, ``SIGINT``); None for a whole run.
    interrupted: str | None = None
    #: What its jobs are, as the index counts them: notebooks (a suite), or runs recorded
    #: from their Result (``suite.record.record_result``: a Locust run has no notebook).
    jobs_are: str = "notebooks"

    @property
    def passed(self) -> bool:
        """Every notebook run passed (skipped ones aside), at least one ran, none stopped."""
        ran = [j for j in self.jobs if j.status != "skipped"]
        return self.interrupted is None and bool(ran) and all(j.passed for j in ran)

    @property
    def status(self) -> Status:
        return run_status([j.status for j in self.jobs], self.interrupted is not None)

    @property
    def checks_skipped(self) -> int:
        """Checks skipped in the notebooks that ran (a target without its database)."""
        return sum(len(j.skipped_checks) for j in self.jobs if j.status != "skipped")

    @property
    def label(self) -> str:
        """The run's status as it reads; ``1 passed, 9 skipped`` when it skipped some,
        ``7 passed, 45 checks skipped`` when its notebooks skipped checks."""
        return figures.run_label(
            self.status,
            sum(j.passed for j in self.jobs),
            len(self.skipped),
            self.checks_skipped,
        )

    @property
    def badge(self) -> str:
        """Green only for a pass that skipped no scenario and no check."""
        return figures.run_badge(self.status, len(self.skipped), self.checks_skipped)

    @property
    def words(self) -> str:
        """``2 of 10 passed, 8 skipped (not run), 12 checks skipped``: the console's count."""
        return figures.run_words([j.status for j in self.jobs], self.checks_skipped)

    @property
    def skipped(self) -> list[JobReport]:
        """Notebooks not run, or whose every check was skipped: neither passed nor failed."""
        return [j for j in self.jobs if j.status == "skipped"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seed": self.seed,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "database": self.database,
            "passed": self.passed,
            "status": self.status,
            "label": self.label,
            "checks_skipped": self.checks_skipped,
            "interrupted": self.interrupted,
            "rerun": self.rerun,
            "previous": self.previous,
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


def run_status(statuses: list[str], interrupted: bool = False) -> Status:
    """A run's status from its notebooks': interrupted, else the worst that ran."""
    if interrupted:
        return "interrupted"
    ran = [s for s in statuses if s != "skipped"]
    if not ran:
        return "skipped"
    return next((s for s in _PRECEDENCE if s in ran), "FAIL")


def _attempt_figure(attempt: dict[str, Any], key: str) -> Any:
    """A figure of an attempt: its own, else its validity check's."""
    found = (attempt.get("figures") or {}).get(key)
    if found is not None:
        return found
    for check in attempt.get("checks", []):
        if check.get("validity") and (check.get("figures") or {}).get(key) is not None:
            return check["figures"][key]
    return None
