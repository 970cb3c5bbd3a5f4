"""Runs listed, found, compared and pruned, from summary.json files as the suite writes them."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from experiments import compare
from experiments.cli import main
from tests.entry import ENTRY


def _job(name: str, layer: str, passed: bool, ok: int, p50: float, ops_s: float) -> dict[str, Any]:
    return {
        "name": name,
        "layer": layer,
        "seed": 1,
        "passed": passed,
        "outcomes": {"claim": {"ok": ok, "no_stock": 50 - ok}},
        "checks": [{"name": "conservation", "passed": passed, "detail": "d"}],
        "figures": {
            "latency": {"p50_ms": p50, "p90_ms": p50 * 2, "p99_ms": p50 * 3, "max_ms": p50 * 4},
            "throughput_ops_s": ops_s,
        },
    }


def _run(results: Path, run_id: str, jobs: list[dict[str, Any]], seed: int = 7) -> Path:
    folder = results / run_id
    folder.mkdir(parents=True)
    summary = {
        "run_id": run_id,
        "seed": seed,
        "started_at": f"2026-11-29T{run_id[9:11]}:{run_id[11:13]}:00+00:00",
        "duration_s": 12.5,
        "scenarios": jobs,
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "index.html").write_text("<html></html>")
    return folder


@pytest.fixture
def results(tmp_path: Path) -> Path:
    r = tmp_path / "results"
    _run(r, "20261129T080000Z-aaaa", [_job("flash_sale", "service", True, 5, 10.0, 400.0)])
    _run(
        r,
        "20261129T090000Z-bbbb",
        [
            _job("flash_sale", "service", False, 6, 20.0, 200.0),
            _job("flash_sale", "http", True, 5, 30.0, 100.0),
        ],
        seed=8,
    )
    (r / "bench-20261129-x").mkdir()  # not a suite run: never listed nor pruned
    (r / "20261129T100000Z-cccc").mkdir()  # interrupted: no summary
    return r


def test_runs_are_listed_oldest_first_and_found_by_id_folder_latest_previous(
    results: Path,
) -> None:
    runs = compare.list_runs(results)
    assert [(r.run_id, r.complete) for r in runs] == [
        ("20261129T080000Z-aaaa", True),
        ("20261129T090000Z-bbbb", True),
        ("20261129T100000Z-cccc", False),
    ]
    assert (runs[1].seed, runs[1].passed, runs[1].failed) == (8, 1, 1)
    assert compare.find_run("latest", results).name == "20261129T090000Z-bbbb"
    assert compare.find_run("previous", results).name == "20261129T080000Z-aaaa"
    assert compare.find_run("20261129T080000Z-aaaa", results).name == "20261129T080000Z-aaaa"
    folder = str(results / "20261129T080000Z-aaaa")
    assert compare.find_run(folder, results).name == "20261129T080000Z-aaaa"
    with pytest.raises(compare.RunNotFound):
        compare.find_run("20261129T100000Z-cccc", results)
    assert compare.previous_run(results, "20261129T090000Z-bbbb") == runs[0].path
    assert compare.previous_run(results, "20261129T080000Z-aaaa") is None


def test_the_comparison_names_changed_verdicts_counts_and_shifts(results: Path) -> None:
    cmp = compare.compare_runs(results / "20261129T080000Z-aaaa", results / "20261129T090000Z-bbbb")
    assert [r.key for r in cmp.changed] == ["flash_sale [service]"]
    assert [r.key for r in cmp.only_b] == ["flash_sale [http]"]
    service = cmp.rows[0]
    assert service.outcome_diffs() == [("claim no_stock", 45, 44), ("claim ok", 5, 6)]
    text = compare.table(cmp)
    assert "verdicts changed: 1 of 1 run in both" in text
    assert "flash_sale [service]               pass -> FAIL" in text
    assert "      conservation                   pass -> FAIL" in text
    assert service.check_changes() == [("conservation", "pass", "FAIL")]
    assert "10.0 -> 20.0 (+100%)" in text  # p50
    assert "400 -> 200 (-50%)" in text  # throughput
    page = compare.write_html(cmp, results / "cmp.html").read_text()
    assert page.count('src="data:image/png;base64,') == 2
    assert 'href="20261129T080000Z-aaaa/index.html"' in page


def test_the_markdown_table_names_each_verdict(results: Path) -> None:
    md = compare.markdown_verdicts(results / "20261129T090000Z-bbbb")
    assert md.splitlines()[0] == (
        "### coupon chaos lab: 1 of 2 passed (run 20261129T090000Z-bbbb, seed 8)"
    )
    assert "| **FAIL** | flash_sale | service | 0/1 | 1 | conservation |" in md


def test_runs_command_lists_and_prunes_to_the_newest(
    results: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["runs", "--results", str(results)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == [
        "run",
        "started",
        "seed",
        "status",
        "passed",
        "failed",
        "skipped",
        "duration",
        "checks-skipped",
    ]
    assert out[1].split() == [
        "20261129T080000Z-aaaa",
        "2026-11-29T08:00:00+00:00",
        "7",
        "pass",
        "1",
        "0",
        "0",
        "12.5",
        "s",
        "0",
    ]
    assert out[3] == "20261129T100000Z-cccc      (incomplete: no summary.json)"
    (results / "latest").symlink_to("20261129T090000Z-bbbb", target_is_directory=True)
    assert main(["runs", "--results", str(results), "--prune", "1"]) == 0
    assert capsys.readouterr().out.startswith("pruned 1 run; kept 2")
    assert sorted(p.name for p in results.iterdir()) == [
        "20261129T090000Z-bbbb",  # where latest points: kept
        "20261129T100000Z-cccc",
        "bench-20261129-x",
        "latest",
    ]


def test_compare_and_open_commands(results: Path, capsys: pytest.CaptureFixture[str]) -> None:
    page = results / "out" / "cmp.html"
    assert (
        main(["compare", "previous", "latest", "--results", str(results), "--html", str(page)]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("A 20261129T080000Z-aaaa  ->  B 20261129T090000Z-bbbb")
    assert page.exists()


def _open(results: Path, browser: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    # Only the venv on PATH and no display: no browser but the one BROWSER names, if any.
    env = {"PATH": str(Path(ENTRY).parent), "HOME": str(results)}
    if browser is not None:
        env["BROWSER"] = browser
    return subprocess.run(
        [ENTRY, "open", *args, "--results", str(results)],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


@pytest.mark.slow
def test_open_uses_the_browser_there_is_and_says_where_the_page_is_without_one(
    results: Path, tmp_path: Path
) -> None:
    r = _open(results, None, "previous")
    index = results / "20261129T080000Z-aaaa" / "index.html"
    assert (r.returncode, r.stdout, r.stderr) == (
        0,
        f"no browser to open it here; the page is {index}\n",
        "",
    )
    opened = tmp_path / "opened.txt"
    browser = tmp_path / "browser.sh"
    browser.write_text(f'#!/bin/sh\necho "$1" >> {opened}\n')
    browser.chmod(0o755)
    r = _open(results, str(browser))
    latest = (results / "20261129T090000Z-bbbb" / "index.html").resolve().as_uri()
    assert (r.returncode, r.stdout) == (0, f"opened {latest}\n")
    assert opened.read_text() == latest + "\n"


def _status_job(name: str, status: str) -> dict[str, Any]:
    job = _job(name, "http", status == "pass", 5, 10.0, 100.0)
    job["status"] = status
    if status == "skipped":
        job["skipped"] = "cannot run against an external target"
        job["checks"] = [{"name": "runnable", "passed": None, "detail": "x", "skipped": True}]
    return job


def test_statuses_are_read_as_written_skipped_is_no_failure_and_interrupted_is_a_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    results = tmp_path / "results"
    target = _run(
        results,
        "20261129T080000Z-aaaa",
        [_status_job("flash_sale", "pass"), *(_status_job(f"s{i}", "skipped") for i in range(9))],
    )
    serial = _run(
        results,
        "20261129T090000Z-bbbb",
        [_status_job("flash_sale", "no_experiment"), _status_job("s0", "unknown")],
    )
    summary = json.loads((serial / "summary.json").read_text())
    stopped = _run(
        results,
        "20261129T100000Z-cccc",
        [_status_job("flash_sale", "interrupted"), _status_job("s0", "interrupted")],
    )
    data = json.loads((stopped / "summary.json").read_text())
    (stopped / "summary.json").write_text(json.dumps({**data, "status": "interrupted"}))
    runs = compare.list_runs(results)
    assert [(r.status, r.passed, r.failed, r.skipped) for r in runs] == [
        ("pass", 1, 0, 9),
        ("unknown", 0, 2, 0),
        ("interrupted", 0, 0, 0),
    ]
    assert summary["scenarios"][0]["status"] == "no_experiment"
    assert main(["runs", "--results", str(results)]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[1:]]
    # A pass that skipped scenarios is not green: "partial", as the index badge reads.
    assert [r[3:7] for r in rows] == [
        ["partial", "1", "0", "9"],
        ["unknown", "0", "2", "0"],
        ["interrupted", "0", "0", "0"],
    ]
    assert compare.find_run("latest", results) == stopped
    cmp = compare.compare_runs(target, serial)
    assert [(r.key, r.verdict(r.a), r.verdict(r.b)) for r in cmp.changed] == [
        ("flash_sale [http]", "pass", "no_experiment"),
        ("s0 [http]", "skipped", "unknown"),
    ]
    text = compare.table(compare.compare_runs(serial, stopped))
    assert "run status: unknown -> interrupted" in text
    assert "flash_sale [http]                  no_experiment -> interrupted" in text
    md = compare.markdown_verdicts(target)
    assert md.splitlines()[0].startswith("### coupon chaos lab: 1 of 10 passed, 9 skipped (run")
    assert "| skipped | s0 | http | 0/1 | 1 |  |" in md


def test_compare_says_the_parameters_differ_and_both_views_count_alike(tmp_path: Path) -> None:
    """users 50 -> 200 went unsaid, and the console's counts were not the page's."""
    results = tmp_path / "results"
    a_job = _job("flash_sale", "service", True, 5, 10.0, 400.0)
    b_job = {**_job("flash_sale", "service", True, 20, 30.0, 700.0), "parameters": {"users": 200}}
    a = _run(
        results, "20261129T080000Z-aaaa", [a_job, _job("double_dip", "service", True, 1, 1, 1)]
    )
    b = _run(results, "20261129T090000Z-bbbb", [b_job])
    # The Result's own params, as the suite saves them: the default users=50 lives only there.
    for run, users in ((a, 50), (b, 200)):
        data = run / "data" / "flash_sale-service"
        data.mkdir(parents=True)
        params = {"seed": 1, "users": users, "stock": 5, "database_url": f"x{users}"}
        (data / "flash_sale-service.result.json").write_text(json.dumps({"params": params}))
    cmp = compare.compare_runs(a, b)
    (row,) = cmp.params_differ
    assert row.param_diffs() == [("users", "50", "200")]  # the URL is where, not what
    text = compare.table(cmp)
    assert "flash_sale [service]               users                      50 -> 200" in text
    page = compare.write_html(cmp, tmp_path / "compare.html").read_text()
    assert "parameter <b>users</b>: 50 &rarr; 200" in page
    # One headline, the same counts in both: 1 in both (not 2 rows), 1 only in A.
    headline = cmp.headline()
    assert headline.startswith("0 of 1 verdicts changed (scenarios run in both); 1 only in A")
    assert "parameters differ in 1" in headline
    assert headline in text
    import html as html_lib

    assert html_lib.escape(headline) in page
