"""The suite's records: what each notebook run reported, and the whole run (``summary.json``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["JobReport", "SuiteReport"]


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
    #: The command that replays exactly this notebook's plan (scenario, layer, seed, -p).
    rerun: str = ""
    #: The parameters set with ``-p`` for this notebook.
    parameters: dict[str, Any] = field(default_factory=dict)
    #: Why the notebook was not run at all (a scenario the target cannot serve).
    skipped: str | None = None

    @property
    def failures(self) -> list[dict[str, Any]]:
        """Checks that ran and did not pass (skipped ones are neither passed nor failed)."""
        return [c for c in self.checks if c["passed"] is not True and not c.get("skipped")]

    @property
    def skipped_checks(self) -> list[dict[str, Any]]:
        return [c for c in self.checks if c.get("skipped")]

    @property
    def status(self) -> str:
        """``pass``, ``FAIL`` or ``skipped`` (not run: never counted as passed)."""
        if self.skipped is not None:
            return "skipped"
        return "pass" if self.passed else "FAIL"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "layer": self.layer,
            "strategy": self.strategy,
            "seed": self.seed,
            "passed": self.passed,
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

    @property
    def passed(self) -> bool:
        """Every notebook run passed (skipped ones aside), and at least one ran."""
        ran = [j for j in self.jobs if j.skipped is None]
        return bool(ran) and all(j.passed for j in ran)

    @property
    def skipped(self) -> list[JobReport]:
        return [j for j in self.jobs if j.skipped is not None]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "seed": self.seed,
            "started_at": self.started_at,
            "duration_s": round(self.duration_s, 3),
            "database": self.database,
            "passed": self.passed,
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
