"""The report in the time of its experiments, and the inner loop (issue 22): figures side by side.

Runs the suite (``coupon-chaos run``) on the same scenarios, seed and database with
this tree's code and with a baseline revision's (``--baseline``, default the commit
before issue 22: ``cbbd49f``), alternating them round by round, and prints for each:

- the report's wall time over its summed experiment time (goal: at most 1.2x), and
- where a notebook's time went outside its experiment (the profile below), read back
  from the run's ``summary.json`` and its executed notebooks (papermill records each
  cell's duration).

With ``--unit`` it also times the inner loop (this tree: ``make unit``, the Makefile's
``pytest -m "not slow and not chaos"`` in pytest-xdist processes, goal under 60 s; the
baseline: its ``make unit``, ``pytest tests``); with
``--test`` this tree's ``make test`` (goal under 6 minutes; long: it is every test).
Figures not measured in this run are the issue's (measured on a fresh clone, 2 cores)
and say so. The machine this runs on is shared: read the ratios, measured side by side.

    .venv/bin/python benchmarks/suite_speed.py zero_stock_stampede flash_sale --layer both
    .venv/bin/python benchmarks/suite_speed.py --run results/latest      # profile a run
    .venv/bin/python benchmarks/suite_speed.py --rounds 2 --unit          # the catalog

Profile rows (seconds, summed over the run's notebooks):

    kernel        a notebook's wall less its cells: kernel start and shutdown, the
                  wait for a kernel started ahead, papermill's writes of the notebook
    imports       cells that only import (the lab: pandas, matplotlib, psycopg)
    experiment    the Result's own duration: lab, plan, faults, checks (the search)
    run call      the cell calling the scenario, less its experiment
    charts        cells that draw a chart (PNG)
    tables        cells that show a table (HTML)
    asserts       the assertion cells (one per expectation)
    other cells   the rest (parameters, record)
    render        each notebook's HTML pages (``render_s``), in the suite's process
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.scenarios import CATALOG

ROOT = Path(__file__).resolve().parents[1]
#: The commit before issue 22 (main at the time it was taken).
BASELINE = "cbbd49f"
#: The catalog on both layers: what ``make report`` runs most of, and all can share.
#: (scale, the one large notebook, is left out: it would dominate the figure.)
DEFAULT_SCENARIOS = tuple(name for name in CATALOG if name != "scale")
GOAL_REPORT_RATIO = 1.2
GOAL_UNIT_S = 60.0
GOAL_TEST_S = 360.0
#: Issue 22's figures (a fresh clone, 2 cores; `make test` on a busy machine).
ISSUE = {
    "report": "329.6 s for 88.8 s of experiments (3.71x), 42 notebooks",
    "report_ratio": 329.6 / 88.8,
    "unit_s": 264.0,
    "test_s": 956.0,
}
PROFILE_ROWS = (
    "kernel",
    "imports",
    "experiment",
    "run call",
    "charts",
    "tables",
    "asserts",
    "other cells",
    "render",
)


@dataclass
class RunFigures:
    """One suite run: its wall, its experiments, its profile, its verdicts."""

    label: str
    run_dir: Path
    wall_s: float
    command_s: float
    experiment_s: float
    profile: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    drawn_again: int = 0

    @property
    def ratio(self) -> float:
        return self.wall_s / self.experiment_s if self.experiment_s else float("inf")


def _cell_kind(cell: dict[str, Any]) -> str:
    source = "".join(cell.get("source", ""))
    lines = [s.strip() for s in source.splitlines() if s.strip() and not s.strip().startswith("#")]
    outputs = cell.get("outputs", [])
    data = [o.get("data", {}) for o in outputs]
    if "parameters" in cell.get("metadata", {}).get("tags", []) or "injected-parameters" in (
        cell.get("metadata", {}).get("tags", [])
    ):
        return "other cells"
    if lines and all(s.startswith(("import ", "from ")) for s in lines):
        return "imports"
    if "scenarios.run(" in source:
        return "run call"
    if any("image/png" in d for d in data):
        return "charts"
    if any("text/html" in d for d in data):
        return "tables"
    if any(s.startswith("assert") for s in lines):
        return "asserts"
    return "other cells"


def profile_run(run_dir: Path) -> tuple[dict[str, float], dict[str, str], int, float, float]:
    """(profile, status per notebook, attempts drawn again, wall, summed experiment)."""
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    rows = dict.fromkeys(PROFILE_ROWS, 0.0)
    statuses: dict[str, str] = {}
    drawn = 0
    experiment_total = 0.0
    for job in summary["scenarios"]:
        timing = job.get("timing", {})
        statuses[f"{job['name']}[{job['layer']}]"] = job["status"]
        drawn += max(0, len(job.get("attempts") or []) - 1)
        experiment = float(timing.get("experiment_s", 0.0))
        experiment_total += experiment
        rows["experiment"] += experiment
        rows["kernel"] += float(timing.get("kernel_s", 0.0))
        rows["render"] += float(timing.get("render_s", 0.0))
        notebook = job.get("notebook")
        if not notebook or not (run_dir / notebook).exists():
            continue
        nb = json.loads((run_dir / notebook).read_text(encoding="utf-8"))
        for cell in nb["cells"]:
            if cell.get("cell_type") != "code":
                continue
            duration = cell.get("metadata", {}).get("papermill", {}).get("duration")
            if isinstance(duration, int | float):
                rows[_cell_kind(cell)] += float(duration)
    rows["run call"] = max(0.0, rows["run call"] - rows["experiment"])
    return rows, statuses, drawn, float(summary["duration_s"]), experiment_total


@dataclass(frozen=True)
class Tree:
    """Code to run the suite with: this tree, or a baseline revision unpacked."""

    label: str
    root: Path
    env: dict[str, str]

    def command(self, *args: str) -> list[str]:
        cli = "from experiments.cli import main; raise SystemExit(main())"
        return [sys.executable, "-c", cli, *args]


def baseline_tree(revision: str, into: Path) -> Tree:
    """``revision`` unpacked with ``git archive`` (the repository is only read)."""
    into.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", revision], capture_output=True, check=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    # PYTHONPATH comes before the editable install's path: its experiments/ is imported,
    # in the suite's process and in every kernel (they inherit the environment).
    return Tree(f"before ({revision})", into, {"PYTHONPATH": str(into)})


def run_suite_once(
    tree: Tree, scenarios: Sequence[str], layer: str, seed: int, url: str, out: Path
) -> RunFigures:
    args = ["run", *scenarios, "--layer", layer, "--hide-code", "--seed", str(seed)]
    args += ["--out", str(out), "--database-url", url]
    env = {**os.environ, **tree.env}
    started = time.perf_counter()
    proc = subprocess.run(
        tree.command(*args), cwd=tree.root, env=env, capture_output=True, text=True, check=False
    )
    command_s = time.perf_counter() - started
    latest = out / "latest"
    if not (latest / "summary.json").exists():
        raise SystemExit(f"{tree.label}: the run wrote no summary:\n{proc.stdout}\n{proc.stderr}")
    run_dir = latest.resolve()
    rows, statuses, drawn, wall, experiment = profile_run(run_dir)
    return RunFigures(tree.label, run_dir, wall, command_s, experiment, rows, statuses, drawn)


def time_command(command: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, str]:
    started = time.perf_counter()
    proc = subprocess.run(
        command, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, check=False
    )
    tail = (proc.stdout.strip().splitlines() or [""])[-1]
    return time.perf_counter() - started, proc.returncode, tail


def _verdict(value: float | None, goal: float) -> str:
    if value is None:
        return "not measured"
    return "MET" if value <= goal else "MISSED"


def print_profiles(runs: Sequence[RunFigures]) -> None:
    labels = list(dict.fromkeys(r.label for r in runs))
    print("\nwhere the time went (s, summed over notebooks; median over rounds):")
    print(f"  {'':14}" + "".join(f"{label:>22}" for label in labels))
    for row in (*PROFILE_ROWS, "run wall"):
        cells = []
        for label in labels:
            own = [r for r in runs if r.label == label]
            values = [r.wall_s if row == "run wall" else r.profile[row] for r in own]
            cells.append(f"{_median(values):22.1f}")
        print(f"  {row:14}" + "".join(cells))


def _median(values: Sequence[float]) -> float:
    ordered = sorted(values)
    n = len(ordered)
    return (ordered[n // 2] + ordered[(n - 1) // 2]) / 2 if n else 0.0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", help="default: the catalog but scale")
    parser.add_argument("--layer", default="both", choices=("service", "http", "both"))
    parser.add_argument("--baseline", default=BASELINE, help="revision to compare with")
    parser.add_argument("--no-baseline", action="store_true", help="this tree only")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--database-url", default=os.environ.get("DATABASE_URL"))
    parser.add_argument("--unit", action="store_true", help="also time the inner loop")
    parser.add_argument("--test", action="store_true", help="also time make test (long)")
    parser.add_argument(
        "--run", type=Path, action="append", default=[], help="only profile these run folders"
    )
    args = parser.parse_args(argv)

    if args.run:
        runs = []
        for run_dir in args.run:
            rows, statuses, drawn, wall, experiment = profile_run(run_dir.resolve())
            runs.append(
                RunFigures(str(run_dir), run_dir, wall, wall, experiment, rows, statuses, drawn)
            )
            print(
                f"{run_dir}: {wall:.1f} s for {experiment:.1f} s of experiments"
                f" ({wall / max(experiment, 1e-9):.2f}x); {drawn} attempt(s) drawn again"
            )
        print_profiles(runs)
        return 0

    from coupon_core.database import provision

    scenarios = args.scenarios or list(DEFAULT_SCENARIOS)
    work = Path(tempfile.mkdtemp(prefix="suite-speed-"))
    handle = provision(args.database_url)
    current = Tree("after (this tree)", ROOT, {})
    trees = (
        [current] if args.no_baseline else [baseline_tree(args.baseline, work / "base"), current]
    )
    runs: list[RunFigures] = []
    unit: dict[str, tuple[float, int, str]] = {}
    test_s: float | None = None
    try:
        print(
            f"suite on {len(scenarios)} scenarios, layer {args.layer}, seed {args.seed},"
            f" {args.rounds} round(s), {os.cpu_count()} cores",
            flush=True,
        )
        for n in range(args.rounds):
            order = trees if n % 2 == 0 else trees[::-1]
            for tree in order:
                out = work / f"results-{n}-{'base' if tree is not current else 'new'}"
                figures = run_suite_once(tree, scenarios, args.layer, args.seed, handle.url, out)
                runs.append(figures)
                print(
                    f"  round {n + 1} {tree.label:24} {figures.wall_s:7.1f} s wall,"
                    f" {figures.experiment_s:6.1f} s experiments ({figures.ratio:.2f}x);"
                    f" {figures.drawn_again} drawn again",
                    flush=True,
                )
        if args.unit:
            for tree in trees:
                if tree is current:
                    # The Makefile's own target: the benchmark times what `make unit` runs.
                    command = ["make", "unit"]
                else:
                    command = [
                        sys.executable,
                        "-m",
                        "pytest",
                        "-q",
                        "-p",
                        "no:cacheprovider",
                        "tests",
                    ]
                unit[tree.label] = time_command(command, tree.root, tree.env)
                print(
                    f"  unit {tree.label:24} {unit[tree.label][0]:7.1f} s: {unit[tree.label][2]}",
                    flush=True,
                )
        if args.test:
            test_s, rc, tail = time_command(["make", "test"], ROOT, {})
            print(f"  make test {test_s:.1f} s (exit {rc}): {tail}", flush=True)
    finally:
        handle.close()

    # Verdicts must not differ between the two codes (same seeds, same plans).
    by_label: dict[str, dict[str, str]] = {}
    for r in runs:
        by_label.setdefault(r.label, {}).update(
            {k: v for k, v in r.statuses.items() if v != "pass"}
        )
    print_profiles(runs)
    new = [r for r in runs if r.label == current.label]
    old = [r for r in runs if r.label != current.label]
    ratio_new = _median([r.ratio for r in new])
    ratio_old = _median([r.ratio for r in old]) if old else None
    print("\nfigure                        before                        after        goal       ")
    before = (
        f"{ratio_old:.2f}x (measured)" if ratio_old else f"{ISSUE['report_ratio']:.2f}x (issue)"
    )
    print(
        f"report wall / experiments     {before:30}{ratio_new:5.2f}x       <= {GOAL_REPORT_RATIO}x"
        f"    {_verdict(ratio_new, GOAL_REPORT_RATIO)}"
    )
    if old:
        speedup = _median([r.wall_s for r in old]) / max(_median([r.wall_s for r in new]), 1e-9)
        print(f"report wall, before / after   {speedup:.2f}x faster on the same notebooks")
    unit_new = unit.get(current.label, (None, 0, ""))[0]
    unit_old = next((v[0] for k, v in unit.items() if k != current.label), None)
    before = f"{unit_old:.1f} s (measured)" if unit_old else f"{ISSUE['unit_s']:.0f} s (issue)"
    after = f"{unit_new:.1f} s" if unit_new is not None else "not run"
    print(
        f"make unit wall                {before:30}{after:12} < {GOAL_UNIT_S:.0f} s"
        f"     {_verdict(unit_new, GOAL_UNIT_S)}"
    )
    after = f"{test_s:.1f} s" if test_s is not None else "not run"
    print(
        f"make test wall                {ISSUE['test_s']:.0f} s (issue){'':19}{after:12} < {GOAL_TEST_S:.0f} s"
        f"    {_verdict(test_s, GOAL_TEST_S)}"
    )
    for label, bad in by_label.items():
        if bad:
            print(f"not passed ({label}): {bad}")
    print(f"runs kept in {work}")
    shutil.rmtree(work / "base", ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
