"""``coupon-chaos locust`` through the installed entry point: a Locust run is a run like any other.

It refuses bad input before any work (exit 2, one line, nothing written), lands in the
results folder as ``run`` does (a run folder, ``latest``, an index, a summary), and
``runs``, ``open`` and ``compare`` read it; the locust_stampede scenario's clock bound
is a declared parameter that reaches the check.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from experiments.errors import SpecError
from experiments.locust import run_locust
from tests.entry import cli, tree

chaos = pytest.mark.chaos

RANGE = "0 <= value <= 100 (ms; past 100 a widening could excuse much of a stampede's order)"


def _cli(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return cli(folder, *args, timeout=600, home=".home", **env)


def _summary(run_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ["locust", "zero_stock_stampede", "-p", "max_clock_uncertainty_ms=500"],
            f"coupon-chaos locust: -p max_clock_uncertainty_ms=500.0 is out of range: {RANGE}",
        ),
        (
            ["run", "locust_stampede", "--layer", "http", "-p", "max_clock_uncertainty_ms=100.5"],
            f"coupon-chaos run: -p max_clock_uncertainty_ms=100.5 is out of range: {RANGE}",
        ),
        (
            ["locust", "zero_stock_stampede", "-p", "users=0"],
            "coupon-chaos locust: -p users=0 is out of range: 1 <= value <= 2000 "
            "(each is a thread of the lab's process)",
        ),
        (
            ["locust", "flash_sale", "-p", "users=abc"],
            "coupon-chaos locust: -p users=abc: users takes an int, like 50",
        ),
        (
            ["locust", "zero_stock_stampede", "-p", "max_clock_uncertainty_ms=near"],
            "coupon-chaos locust: -p max_clock_uncertainty_ms=near: max_clock_uncertainty_ms "
            "takes a float, like 25.0",
        ),
        (
            ["locust", "zero_stock_stampede", "-p", "colour=1"],
            "coupon-chaos locust: -p colour: no parameter 'colour' in zero_stock_stampede "
            "driven by Locust; allowed: stock, users, max_clock_uncertainty_ms",
        ),
        (
            ["locust", "zero_stock_stampede", "-p", "strategy=atomic", "--strategy", "row_lock"],
            "coupon-chaos locust: -p strategy=atomic conflicts with --strategy row_lock: give one",
        ),
        (
            ["locust", "zero_stock_stampede", "--results", "/proc/nope"],
            "coupon-chaos locust: --results /proc/nope: /proc is not writable",
        ),
    ],
    ids=lambda v: " ".join(v)[:50] if isinstance(v, list) else "",
)
def test_refused_before_any_work(tmp_path: Path, args: list[str], line: str) -> None:
    done = _cli(tmp_path, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert done.stderr.splitlines() == [line]
    assert done.stdout == ""
    assert not (tmp_path / "results").exists()
    assert tree(tmp_path) <= {".home"}


def test_run_locust_refuses_a_bound_past_its_range_before_any_work(tmp_path: Path) -> None:
    # No database given and none started: the refusal comes first.
    with pytest.raises(SpecError, match=r"max_clock_uncertainty_ms=101 is out of range"):
        run_locust("zero_stock_stampede", max_clock_uncertainty_ms=101, out_dir=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_the_bound_is_a_declared_parameter(tmp_path: Path) -> None:
    from experiments.linearizability import MAX_CLOCK_UNCERTAINTY_MS
    from experiments.scenarios import SCENARIOS

    stampede = SCENARIOS["locust_stampede"]
    assert stampede.defaults["max_clock_uncertainty_ms"] == MAX_CLOCK_UNCERTAINTY_MS
    assert stampede.ranges["max_clock_uncertainty_ms"].describe() == RANGE
    assert stampede.params()["max_clock_uncertainty_ms"] == MAX_CLOCK_UNCERTAINTY_MS
    # What it says of the widening: between processes, one process's order kept.
    assert "each op widened" not in stampede.description
    assert "one process's own ops kept in their order exactly" in stampede.description
    notebook = Path(__file__).resolve().parents[2] / "notebooks" / "23_locust_stampede.ipynb"
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    parameters = next(c for c in cells if "parameters" in c["metadata"].get("tags", []))
    assert "".join(parameters["source"]).endswith("\nmax_clock_uncertainty_ms = 25.0")
    listed = _cli(tmp_path, "list")
    assert listed.returncode == 0, listed.stderr
    assert "max_clock_uncertainty_ms=25.0 (float)" in listed.stdout
    assert f"max_clock_uncertainty_ms: {RANGE}" in listed.stdout


@chaos
def test_two_locust_runs_keep_both_and_runs_open_compare_read_them(
    db_url: str, tmp_path: Path
) -> None:
    args = ("locust", "flash_sale", "--processes", "2", "-p", "users=20")
    first = _cli(tmp_path, *args, "-p", "stock=3", "--seed", "5", DATABASE_URL=db_url)
    assert first.returncode == 0, first.stdout + first.stderr
    results = tmp_path / "results"
    a = (results / "latest").resolve()
    lines = first.stdout.splitlines()
    assert lines[0] == "[flash_sale] seed=5 layer=http strategy=row_lock"
    assert "PASSED flash_sale seed=5" in lines
    assert lines[-1].startswith(f"run {a.name} (seed 5): 1 of 1 passed in ")
    assert lines[-1].endswith(f" s; report: {a / 'index.html'}")
    stem = a / "data" / "flash_sale-http"
    for name in ("result.json", "history.jsonl", "locust.html", "locust-stats.json"):
        assert (stem / f"flash_sale-http.{name}").is_file(), sorted(tree(a))
    index = (a / "index.html").read_text(encoding="utf-8")
    assert "</span>\n1 of 1 runs passed" in index  # a run recorded from its Result: no notebook
    page = (a / "flash_sale-http.html").read_text(encoding="utf-8")
    assert "data/flash_sale-http/flash_sale-http.locust.html" in page
    assert "<img" in page
    assert "linearizable" in page
    job = _summary(a)["scenarios"][0]
    assert (job["name"], job["layer"], job["status"], job["seed"]) == (
        "flash_sale",
        "http",
        "pass",
        5,
    )
    assert job["outcomes"]["claim"] == {"ok": 3, "no_stock": 17}
    assert job["parameters"] == {"users": 20, "stock": 3}
    assert job["rerun"] == (
        "coupon-chaos locust flash_sale --processes 2 -p users=20 -p stock=3 "
        '--database-url "$DATABASE_URL" --seed 5'
    )
    # The summary's collision figures are the validity check's (no 0 beside 20).
    assert job["peak_in_flight"] >= 10, job
    assert job["figures"]["ops"] == 20, job["figures"]

    # The second, into the same folder by --results (the environment points elsewhere).
    second = _cli(
        tmp_path,
        *args,
        "-p",
        "stock=4",
        "--seed",
        "5",
        "--results",
        str(results),
        DATABASE_URL=db_url,
        COUPON_CHAOS_RESULTS=str(tmp_path / "elsewhere"),
    )
    assert second.returncode == 0, second.stdout + second.stderr
    b = (results / "latest").resolve()
    assert b != a
    assert (a / "summary.json").is_file()
    assert not (tmp_path / "elsewhere").exists()
    assert f"compared with the previous run {a.name}: {b / 'compare.html'}" in second.stdout
    assert _summary(b)["previous"] == a.name

    runs = _cli(tmp_path, "runs")
    assert runs.returncode == 0, runs.stderr
    rows = runs.stdout.splitlines()[1:]
    assert [r.split()[0] for r in rows] == [a.name, b.name]
    assert all(r.split()[2:5] == ["5", "pass", "1"] for r in rows), rows

    opened = _cli(tmp_path, "open", a.name, BROWSER="true")
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout == f"opened {(a / 'index.html').as_uri()}\n"

    cmp = _cli(tmp_path, "compare", "previous", "latest")
    assert cmp.returncode == 0, cmp.stderr
    assert "claim ok                        3 -> 4" in cmp.stdout
    assert "claim no_stock                 17 -> 16" in cmp.stdout
    assert (b / f"compare-{a.name}.html").is_file()


@chaos
def test_the_declared_bound_reaches_the_check_through_the_notebook(
    db_url: str, tmp_path: Path
) -> None:
    # Planted: a bound of 0 ms no measured clock can meet. Set by -p on the notebook,
    # it must make the linearizability verdict unknown (exit 1), never a pass; before
    # the parameter was declared, -p refused it ("no parameter") and no run showed it.
    done = _cli(
        tmp_path,
        "run",
        "locust_stampede",
        "--layer",
        "http",
        "-p",
        "users=20",
        "-p",
        "max_clock_uncertainty_ms=0",
        "--seed",
        "3",
        DATABASE_URL=db_url,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    job = _summary((tmp_path / "results" / "latest").resolve())["scenarios"][0]
    assert job["status"] == "unknown", job["checks"]
    linearizable = next(c for c in job["checks"] if c["name"] == "linearizable")
    assert linearizable["passed"] is None
    assert "past the bound of +-0 ms" in linearizable["detail"], linearizable["detail"]
    assert job["parameters"] == {"users": 20, "max_clock_uncertainty_ms": 0.0}
