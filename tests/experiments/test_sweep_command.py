"""``coupon-chaos sweep`` as a user runs it: usage errors in one line, a real sweep's folder."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from experiments.cli import main
from experiments.sweep import REAL_STRATEGIES


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["no_such"], "unknown scenario 'no_such'"),
        (["flash_sale", "--strategy", "rowlock"], "unknown strategy 'rowlock'"),
        (["flash_sale", "-p", "users"], "expected NAME=VALUE"),
        (["flash_sale", "-p", "users=many"], "users takes an int, like 50"),
        (["flash_sale", "-p", "stock=1.5"], "stock takes an int, like 5"),
        (["flash_sale", "double_dip", "-p", "users=3"], "not a parameter of double_dip"),
        (["flash_sale", "-p", "seed=3"], "set it with --first-seed"),
        (["flash_sale", "-p", "strategy=atomic"], "set it with --strategy"),
        (["flash_sale", "--seeds", "0"], "--seeds must be at least 1"),
        (["flash_sale", "--budget-s", "0"], "--budget-s must be positive"),
        (["flash_sale", "--database-url", "mysql://x@h/db"], "not a PostgreSQL URL"),
    ],
)
def test_bad_input_is_one_line_and_runs_nothing(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = [] if "--database-url" in args else ["--database-url", "postgresql://x@127.0.0.1:1/x"]
    code = main(["sweep", *args, "--out", str(tmp_path), *url])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith("coupon-chaos sweep: ")
    assert message in err
    assert not (tmp_path / "sweeps").exists(), "nothing written for a refused sweep"


@pytest.mark.chaos
@pytest.mark.slow
def test_a_sweep_writes_tables_and_its_report_page(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        [
            "sweep",
            "flash_sale",
            "--seeds",
            "2",
            "--first-seed",
            "5",
            "--strategy",
            # Strategies whose claims wait on the coupon's row: their 12-user stampede
            # collides even with the CPU busy (atomic's did not, once, under two busy
            # loops: a sweep reports that run as FAIL, stampede_collided, as it should).
            "row_lock,serializable",
            "-p",
            "users=12",
            "-p",
            "stock=3",
            "--database-url",
            db_url,
            "--out",
            str(tmp_path),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0, out
    folder = (tmp_path / "sweeps" / "latest").resolve()
    runs = pd.read_csv(folder / "tables" / "runs.csv")
    assert len(runs) == 4
    assert set(runs["seed"]) == {5, 6}
    assert (runs["claim_ok"] == 3).all()
    meta = json.loads((folder / "tables" / "sweep.json").read_text())
    assert meta["params"] == {"users": 12, "stock": 3}
    assert "--database-url" not in meta["command"]
    page = (folder / "sweep.html").read_text(encoding="utf-8")
    assert 'class="cc-banner cc-pass"' in page
    # Every chart drawn, embedded: outcomes, ECDF, bands, throughput, start, retries,
    # lock waits, detection (which says no mutant ran).
    assert page.count("data:image/png;base64") >= 8
    assert "4 runs, runs took " in out  # the one runs time (sweep_report.runs_time)
    assert "report:" in out


def test_seed_sweep_script_is_a_thin_caller_of_the_command() -> None:
    import importlib.util

    path = Path(__file__).resolve().parents[2] / "scripts" / "seed_sweep.py"
    spec = importlib.util.spec_from_file_location("seed_sweep", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    words = module.command(
        module.parse(["-n", "3", "--scenarios", "flash_sale", "--layers", "http"])
    )
    assert words[:4] == ["sweep", "flash_sale", "--seeds", "3"]
    assert words[words.index("--layer") + 1] == "http"
    assert words.count("--strategy") == len(REAL_STRATEGIES)
    both = module.command(module.parse(["--scenarios", "double_dip"]))
    assert both[both.index("--layer") + 1] == "both"


@pytest.mark.chaos
@pytest.mark.slow
def test_an_unreachable_database_is_one_line_without_its_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = "postgresql://u:sekrit@127.0.0.1:1/x?connect_timeout=1"
    code = main(
        ["sweep", "flash_sale", "--seeds", "1", "--database-url", url, "--out", str(tmp_path)]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert err.startswith("coupon-chaos: cannot reach the database at 127.0.0.1:1")
    assert "sekrit" not in err
    assert not (tmp_path / "sweeps").exists()


def test_a_password_in_an_error_is_masked() -> None:
    from experiments.sweep import mask

    assert mask("failed: postgresql://u:p%40ss@h:5/db x") == "failed: postgresql://u:***@h:5/db x"
    assert mask("postgresql://u@h/db") == "postgresql://u@h/db"
