"""Bad input to the CLI, through the real entry point: the exit code, one line, nothing written.

Each case runs the installed ``coupon-chaos`` script in a fresh folder (the default
``results/`` lands there) and checks the exact line on stderr, that stdout is empty and
that the folder holds afterwards exactly what it held before.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from coupon_core.database import free_port
from experiments import scenarios as catalog
from experiments import suite
from experiments.commands.run import strategy_choices
from experiments.mutants import MUTANTS
from experiments.sweep import REAL_STRATEGIES as SWEEP_STRATEGIES
from tests.entry import ENTRY, cli, tree

# Subprocesses and database starts, seconds each: out of `make unit`, in `make test`.
pytestmark = pytest.mark.slow

# The lists a choice error names grow with every strategy and scenario; the message's
# form is what these cases pin, the lists come from the registries the CLI reads.
STRATEGIES = strategy_choices()
REAL_STRATEGIES = [s for s in STRATEGIES if not s.startswith("mutant:")]
QUOTED_STRATEGIES = ", ".join(repr(s) for s in STRATEGIES)
RUNNABLE = ", ".join(suite.scenario_layers())
MUTANT_SCENARIOS = ", ".join(catalog.SCENARIOS)
MUTANT_NAMES = ", ".join(m.name for m in MUTANTS)

ROOT = Path(__file__).resolve().parents[2]
NOT_A_URL = "--database-url: not a PostgreSQL URL (expected postgresql://user@host:port/dbname)"


def _cli(folder: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return cli(folder, *args, timeout=120, home=".home-unused", **env)


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "adir").mkdir()
    return tmp_path


def test_the_entry_point_is_installed() -> None:
    assert Path(ENTRY).exists(), f"no coupon-chaos script at {ENTRY}: run make install"


_PORT = free_port()  # nothing listens there: connections are refused at once

CASES: list[tuple[list[str], dict[str, str], int, str]] = [
    # run: URLs
    (["run", "all", "--database-url", "not-a-url"], {}, 2, f"coupon-chaos run: {NOT_A_URL}"),
    (
        ["run", "all", "--database-url", "http://example.org/db"],
        {},
        2,
        "coupon-chaos run: --database-url: not a PostgreSQL URL (scheme 'http'; expected postgresql://...)",
    ),
    (
        ["run", "flash_sale"],
        {"DATABASE_URL": "not-a-url"},
        2,
        "coupon-chaos run: DATABASE_URL: not a PostgreSQL URL (expected postgresql://user@host:port/dbname)",
    ),
    (
        ["run", "flash_sale", "--database-url", f"postgresql://x:hunter2@127.0.0.1:{_PORT}/db"],
        {},
        1,
        f"coupon-chaos: cannot reach the database at 127.0.0.1:{_PORT} (database db): Connection refused",
    ),
    (
        [
            "run",
            "all",
            "--database",
            "docker",
            "--database-url",
            f"postgresql://x@127.0.0.1:{_PORT}/db",
        ],
        {},
        2,
        "coupon-chaos run: give --database-url (or DATABASE_URL) or --database docker, not both",
    ),
    # run: --out
    (
        ["run", "all", "--out", "afile"],
        {},
        2,
        "coupon-chaos run: --results afile: exists and is not a folder",
    ),
    (
        ["run", "all", "--out", "afile/sub"],
        {},
        2,
        "coupon-chaos run: --results afile/sub: afile is not a folder",
    ),
    (
        ["run", "all", "--out", "/proc/coupon-chaos/results"],
        {},
        2,
        "coupon-chaos run: --results /proc/coupon-chaos/results: /proc is not writable",
    ),
    # run: choices
    (
        ["run", "all", "--strategy", "bogus"],
        {},
        2,
        f"coupon-chaos run: argument --strategy: invalid choice: 'bogus'"
        f" (choose from {QUOTED_STRATEGIES}) (see coupon-chaos run --help)",
    ),
    (
        ["run", "all", "--layer", "sideways"],
        {},
        2,
        "coupon-chaos run: argument --layer: invalid choice: 'sideways' (choose from 'service',"
        " 'http', 'both') (see coupon-chaos run --help)",
    ),
    (
        ["run", "input_boundary"],
        {},
        2,
        "coupon-chaos run: input_boundary runs on the http layer only; add --layer http (or --layer both)",
    ),
    (
        ["run", "detection", "--layer", "http"],
        {},
        2,
        "coupon-chaos run: detection runs on the service layer only; add --layer service (or --layer both)",
    ),
    (
        ["run", "nosuch"],
        {},
        2,
        f"coupon-chaos run: unknown scenario 'nosuch'; choose from {RUNNABLE}",
    ),
    (
        ["run", "flash_sale", "--group", "catalog"],
        {},
        2,
        "coupon-chaos run: give SCENARIO names or --group, not both",
    ),
    (["run", "all", "--jobs", "0"], {}, 2, "coupon-chaos run: --jobs must be at least 1"),
    # run: -p
    (
        ["run", "flash_sale", "-p", "users=abc"],
        {},
        2,
        "coupon-chaos run: -p users=abc: users takes an int, like 50",
    ),
    (
        ["run", "flash_sale", "-p", "users=2.5"],
        {},
        2,
        "coupon-chaos run: -p users=2.5: users takes an int, like 50",
    ),
    (
        ["run", "flash_sale", "-p", "nosuch=1"],
        {},
        2,
        "coupon-chaos run: -p nosuch: no parameter 'nosuch' in flash_sale; allowed: stock, strategy, users",
    ),
    (
        ["run", "all", "-p", "seed=1"],
        {},
        2,
        "coupon-chaos run: -p seed: set it with --seed, not -p",
    ),
    (
        ["run", "all", "-p", "users"],
        {},
        2,
        "coupon-chaos run: -p users: expected NAME=VALUE, e.g. -p users=200",
    ),
    (
        ["run", "flash_sale", "-p", "strategy=mutant:nope"],
        {},
        2,
        f"coupon-chaos run: unknown strategy 'mutant:nope'; choose from {', '.join(STRATEGIES)}",
    ),
    # serve
    (["serve", "--database-url", "not-a-url"], {}, 2, f"coupon-chaos serve: {NOT_A_URL}"),
    (
        ["serve", "--port", "0", "--database-url", f"postgresql://x:hunter2@127.0.0.1:{_PORT}/db"],
        {},
        1,
        f"coupon-chaos: cannot reach the database at 127.0.0.1:{_PORT} (database db): Connection refused",
    ),
    (
        ["serve", "--host", "256.0.0.1"],
        {},
        2,
        "coupon-chaos serve: --host 256.0.0.1: not an address (nor a name) this machine can use",
    ),
    # db, list
    (
        ["db", "sideways"],
        {},
        2,
        "coupon-chaos db: argument action: invalid choice: 'sideways' (choose from 'up', 'down',"
        " 'url', 'status', 'reap') (see coupon-chaos db --help)",
    ),
    (
        ["list", "--bogus"],
        {},
        2,
        "coupon-chaos list: unrecognized arguments: --bogus (see coupon-chaos list --help)",
    ),
    # bench
    (
        ["bench", "--url", "nope"],
        {},
        2,
        "coupon-chaos bench: --url: not a PostgreSQL URL (expected postgresql://user@host:port/dbname)",
    ),
    (
        ["bench", "--out", "afile"],
        {},
        2,
        "coupon-chaos bench: --out afile: exists and is not a folder",
    ),
    (["bench", "--seconds", "0"], {}, 2, "coupon-chaos bench: --seconds must be at least 1"),
    (
        ["bench", "--strategies", "nope"],
        {},
        2,
        f"coupon-chaos bench: argument --strategies: choose from {','.join(REAL_STRATEGIES)}:"
        " 'nope' (see coupon-chaos bench --help)",
    ),
    # mutants
    (
        ["mutants", "nosuch"],
        {},
        2,
        f"coupon-chaos mutants: unknown scenario 'nosuch'; choose from {MUTANT_SCENARIOS}",
    ),
    (
        ["mutants", "--mutant", "nosuch"],
        {},
        2,
        "coupon-chaos mutants: unknown mutant 'nosuch'; choose from lost_update,"
        " check_then_insert, decrement_after_commit, swallow_unique, serializable_no_retry,"
        " lock_after_check, no_unique+atomic, no_check+lock_after_check, no_unique+row_lock,"
        " no_check+row_lock",
    ),
    (["mutants", "--attempts", "0"], {}, 2, "coupon-chaos mutants: --attempts must be at least 1"),
    (
        ["mutants", "--json", "adir"],
        {},
        2,
        "coupon-chaos mutants: --json adir: is a folder, not a file",
    ),
    (["mutants", "--database-url", "nope"], {}, 2, f"coupon-chaos mutants: {NOT_A_URL}"),
    # runs, compare, open
    (
        ["runs", "--prune", "0"],
        {},
        2,
        "coupon-chaos runs: argument --prune: must be at least 1: 0 (see coupon-chaos runs --help)",
    ),
    (
        ["compare", "nope", "latest"],
        {},
        2,
        "coupon-chaos compare: no run 'nope' (not a run id in {results}, nor a run folder)",
    ),
    (["open"], {}, 2, "coupon-chaos open: no latest run in {results}"),
    (["runs", "--markdown"], {}, 2, "coupon-chaos runs: no latest run in {results}"),
    # issue 21: refused before any work
    (
        ["run", "flash_sale", "-p", "stock=-5"],
        {},
        2,
        "coupon-chaos run: -p stock=-5 is out of range: 1 <= value <= 2147483647 (a coupon's amount)",
    ),
    (
        ["run", "flash_sale", "-p", "users=0"],
        {},
        2,
        "coupon-chaos run: -p users=0 is out of range: 1 <= value <= 2000"
        " (each is a thread of the lab's process)",
    ),
    (
        ["run", "mixed_load", "-p", "create_ratio=2.5"],
        {},
        2,
        "coupon-chaos run: -p create_ratio=2.5 is out of range: 0 <= value <= 1 (a share of the ops)",
    ),
    (
        ["run", "flash_sale", "-p", "strategy=atomic", "--strategy", "row_lock"],
        {},
        2,
        "coupon-chaos run: -p strategy=atomic conflicts with --strategy row_lock: give one",
    ),
    (
        ["run", "flash_sale", "-p", "users=3", "-p", "users=4"],
        {},
        2,
        "coupon-chaos run: -p users: given twice (3 and 4): give one",
    ),
    (
        ["run", "all", "flash_sale"],
        {},
        2,
        "coupon-chaos run: give all or SCENARIO names, not both",
    ),
    (
        ["sweep", "flash_sale", "--strategy", "nope"],
        {},
        2,
        f"coupon-chaos sweep: unknown strategy 'nope'; choose all, mutants,"
        f" {', '.join(SWEEP_STRATEGIES)} or a mutant ({MUTANT_NAMES})",
    ),
    (
        ["locust", "nosuch"],
        {},
        2,
        "coupon-chaos locust: Locust cannot drive 'nosuch'; it drives zero_stock_stampede,"
        " flash_sale, constraint_storm, double_dip, mixed_load",
    ),
]


@pytest.mark.parametrize(
    ("args", "env", "code", "line"),
    CASES,
    ids=[" ".join(args)[:60] for args, *_ in CASES],
)
def test_bad_input_is_one_line_before_any_work(
    folder: Path, args: list[str], env: dict[str, str], code: int, line: str
) -> None:
    before = tree(folder)
    r = _cli(folder, *args, **env)
    line = line.replace("{results}", str(folder / "results"))
    assert (r.returncode, r.stderr) == (code, line + "\n")
    assert r.stdout == ""
    assert "hunter2" not in r.stderr
    assert tree(folder) == before, "a refused command wrote something"


@pytest.mark.skipif(
    importlib.util.find_spec("testcontainers") is not None,
    reason="testcontainers is installed: --database docker would start a container",
)
def test_the_docker_path_without_its_extra_is_one_line(folder: Path) -> None:
    before = tree(folder)
    r = _cli(folder, "run", "flash_sale", "--database", "docker")
    assert (r.returncode, r.stdout, r.stderr) == (
        1,
        "",
        "coupon-chaos: cannot start the database: testcontainers is not installed:"
        " pip install '.[docker]'\n",
    )
    assert tree(folder) == before


def test_debug_is_accepted_before_and_after_the_command(folder: Path) -> None:
    for args in (["--debug", "run", "nosuch"], ["run", "nosuch", "--debug"]):
        r = _cli(folder, *args)
        assert r.returncode == 2
        assert r.stderr.startswith("coupon-chaos run: unknown scenario 'nosuch'")
        assert "Traceback" not in r.stderr


@pytest.mark.chaos
def test_ctrl_c_is_exit_130_and_one_line(folder: Path) -> None:
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    proc = subprocess.Popen(
        [ENTRY, "run", "flash_sale", "--out", "results"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environ,
        cwd=folder,
    )
    try:
        assert proc.stdout is not None
        # The plan is printed before the database starts: interrupt the run after it.
        first = proc.stdout.readline()
        assert first.startswith("seed "), first
        time.sleep(0.5)  # not for a result: lets the run get into its work first
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == 130
    assert err.strip().splitlines()[-1] == "coupon-chaos: interrupted"
    assert "Traceback" not in err


def test_an_unexpected_error_is_one_line_and_debug_shows_its_traceback(folder: Path) -> None:
    # Two runs whose summaries are damaged in a way no check foresees.
    for run_id in ("20261129T080000Z-aaaa", "20261129T090000Z-bbbb"):
        (folder / "results" / run_id).mkdir(parents=True)
        (folder / "results" / run_id / "summary.json").write_text('{"scenarios": 5}')
    args = ["compare", "previous", "latest", "--html", "adir/cmp.html"]
    r = _cli(folder, *args)
    assert (r.returncode, r.stderr) == (
        1,
        "coupon-chaos: unexpected TypeError: 'int' object is not iterable"
        " (rerun with --debug for the traceback)\n",
    )
    r = _cli(folder, *args, "--debug")
    assert r.returncode == 1
    assert r.stderr.startswith("Traceback (most recent call last):")
    assert r.stderr.endswith("coupon-chaos: unexpected TypeError: 'int' object is not iterable\n")


def test_a_bare_run_prints_usage_and_runs_nothing(folder: Path) -> None:
    before = tree(folder)
    r = _cli(folder, "run")
    lines = r.stderr.splitlines()
    assert r.returncode == 2
    assert r.stdout == ""
    assert lines[0].startswith("usage: coupon-chaos run ")
    assert (
        lines[-1] == "coupon-chaos run: give SCENARIO names, all (every notebook) or --group GROUP"
    )
    assert tree(folder) == before


def test_sweep_takes_every_strategy_run_serve_bench_and_mutants_take(folder: Path) -> None:
    from coupon_core import available_strategies
    from experiments.sweep import REAL_STRATEGIES, expand_strategies

    assert set(REAL_STRATEGIES) == set(available_strategies())
    assert "row_lock_pipelined" in expand_strategies(["all"])
    assert expand_strategies(["row_lock_pipelined"]) == ["row_lock_pipelined"]


def test_the_results_folder_does_not_follow_the_working_directory(folder: Path) -> None:
    from experiments.cli_checks import DEFAULT_RESULTS

    environ = {k: v for k, v in os.environ.items() if k not in ("COUPON_CHAOS_RESULTS",)}

    def runs(*args: str) -> str:
        r = subprocess.run(
            [ENTRY, "runs", *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=environ,
            cwd=folder,
        )
        assert r.returncode == 0, r.stderr
        return r.stdout + r.stderr

    # From elsewhere, the project's folder, whether it holds runs or none (it held some
    # once, left by an earlier test, and "no runs in ..." was not the first line).
    assert runs() == runs("--results", str(DEFAULT_RESULTS))
    assert str(folder) not in runs()
    r = _cli(folder, "runs")
    assert r.stdout == f"no runs in {folder / 'results'}\n"
