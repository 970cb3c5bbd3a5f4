"""Real runs through the installed ``coupon-chaos``: -p and --seed as given, replays, comparison."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.entry import cli

pytestmark = pytest.mark.chaos

ROOT = Path(__file__).resolve().parents[2]


def _cli(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(folder, *args, timeout=600)


def _summary(run_dir: Path) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((run_dir / "summary.json").read_text())
    return loaded


def test_two_runs_with_parameters_then_runs_compare_and_the_index_link(tmp_path: Path) -> None:
    first = _cli(tmp_path, "run", "flash_sale", "-p", "users=20", "-p", "stock=3", "--seed", "7")
    assert first.returncode == 0, first.stdout + first.stderr
    assert first.stdout.startswith("seed 7: flash_sale\n")
    a = (tmp_path / "results" / "latest").resolve()
    job = _summary(a)["scenarios"][0]
    assert (job["seed"], job["parameters"]) == (7, {"stock": 3, "users": 20})
    assert job["outcomes"]["claim"] == {"ok": 3, "no_stock": 17}
    assert job["rerun"] == "coupon-chaos run flash_sale -p users=20 -p stock=3 --seed 7"
    assert not (a / "compare.html").exists()  # the first run has nothing to compare with

    second = _cli(tmp_path, "run", "flash_sale", "-p", "users=20", "-p", "stock=4", "--seed", "7")
    assert second.returncode == 0, second.stdout + second.stderr
    b = (tmp_path / "results" / "latest").resolve()
    assert _summary(b)["previous"] == a.name
    assert 'href="compare.html"' in (b / "index.html").read_text()
    assert f"compared with the previous run {a.name}" in second.stdout

    runs = _cli(tmp_path, "runs")
    assert runs.returncode == 0
    assert [line.split()[0] for line in runs.stdout.splitlines()[1:]] == [a.name, b.name]

    cmp = _cli(tmp_path, "compare", "previous", "latest")
    assert cmp.returncode == 0, cmp.stderr
    assert "claim ok                        3 -> 4" in cmp.stdout
    assert "claim no_stock                 17 -> 16" in cmp.stdout
    assert (b / f"compare-{a.name}.html").exists()


def test_a_mutant_strategy_works_in_a_scenario_without_an_install_call(db_url: str) -> None:
    # A fresh interpreter: nothing registered the mutants before this call.
    code = (
        "import sys\n"
        "from coupon_core.strategies import STRATEGIES\n"
        "from experiments import scenarios\n"
        "assert 'mutant:lost_update' not in STRATEGIES\n"
        "r = scenarios.run('double_dip', strategy='mutant:lost_update', database_url=sys.argv[1],"
        " seed=3)\n"
        "print(r.strategy, sum(r.outcomes()['claim'].values()))\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code, db_url],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[-1] == "mutant:lost_update 10"
    bad = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys\nfrom experiments import scenarios\n"
            "scenarios.run('double_dip', strategy='mutant:nope', database_url=sys.argv[1])",
            db_url,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
    )
    assert bad.returncode == 1
    # Refused by the spec, before any work, naming the mutants among the choices.
    assert "SpecError: unknown strategy 'mutant:nope'; choose from advisory," in bad.stderr
    assert "mutant:lost_update" in bad.stderr.splitlines()[-1]
