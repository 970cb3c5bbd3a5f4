"""An interrupted ``coupon-chaos run`` (SIGTERM or SIGINT) stops all it started and records it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import nbformat as _nbformat
import pytest

from tests.entry import ENTRY
from tests.procs import children

pytestmark = [pytest.mark.chaos, pytest.mark.slow]

nbformat: Any = _nbformat


def _sleeper(path: Path) -> None:
    """A notebook that starts a database of its own (as a fault scenario's cluster), says it
    started (a file in its data folder), then sleeps."""
    nb: Any = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["coupon_chaos"] = {"scenario": path.stem, "layers": ["service"]}
    params = nbformat.v4.new_code_cell("seed = None\nlayer = 'service'\nout_dir = None")
    params.metadata["tags"] = ["parameters"]
    started = (
        "from pathlib import Path\nimport time\n"
        "from coupon_core import EmbeddedPostgres\n"
        "with EmbeddedPostgres.create() as own:\n"
        "    Path(out_dir, 'started').touch()\n"
        "    time.sleep(300)"
    )
    nb.cells = [params, nbformat.v4.new_code_cell(started)]
    nbformat.write(nb, path)


def _cmdlines() -> dict[int, str]:
    found = {}
    for entry in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            found[int(entry.parent.name)] = entry.read_bytes().replace(b"\0", b" ").decode()
        except (OSError, ValueError):
            continue
    return found


def _interrupted_run(tmp_path: Path, notebooks: Path, signum: int) -> subprocess.Popen[str]:
    # Our own temp root: the suite's embedded PostgreSQL lives under it, and only it. A
    # short path under /tmp: PostgreSQL's socket path must fit in 107 bytes, and pytest's
    # tmp_path grows with its run count (pytest-40/... was too long for it).
    temp = Path(tempfile.mkdtemp(prefix=f"cc-int-{signum}-", dir="/tmp"))
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"} | {
        "TMPDIR": str(temp),
        "COUPON_CHAOS_RESULTS": str(results),
    }
    earlier = set(results.glob("*/data/*/started"))
    proc = subprocess.Popen(
        [ENTRY, "run", "all", "--notebooks", str(notebooks), "--seed", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not set(results.glob("*/data/*/started")) - earlier:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the first notebook never started"
        time.sleep(0.1)
    kernels = children(proc.pid)
    assert kernels, "no kernel process under the run"
    ours = [p for p, cmd in _cmdlines().items() if str(temp) in cmd and "postgres -D" in cmd]
    assert len(ours) == 2, "not the suite's PostgreSQL and the notebook's under the temp root"
    os.kill(proc.pid, signum)
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        raise
    assert proc.returncode == 128 + signum, (out, err)
    assert err.strip().splitlines()[-1] == "coupon-chaos: interrupted"
    name = signal.Signals(signum).name
    assert f"interrupted by {name}: report: {tmp_path / 'results'}" in out
    left = [p for p, cmd in _cmdlines().items() if str(temp) in cmd and "postgres" in cmd]
    assert left == [], f"PostgreSQL left running: {left}"
    alive = [p for p in kernels if Path(f"/proc/{p}").exists()]
    assert alive == [], f"kernels left running: {alive}"
    return proc


def test_sigterm_and_sigint_stop_everything_and_record_an_interrupted_run(tmp_path: Path) -> None:
    notebooks = tmp_path / "notebooks"
    notebooks.mkdir()
    _sleeper(notebooks / "a_sleeps.ipynb")
    _sleeper(notebooks / "b_sleeps.ipynb")
    results = tmp_path / "results"
    ids = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        _interrupted_run(tmp_path, notebooks, signum)
        run_dir = (results / "latest").resolve()
        summary = json.loads((run_dir / "summary.json").read_text())
        assert summary["status"] == "interrupted"
        assert summary["passed"] is False
        assert [(s["name"], s["status"]) for s in summary["scenarios"]] == [
            ("a_sleeps", "interrupted"),
            ("b_sleeps", "interrupted"),
        ]
        assert (run_dir / "index.html").is_file()
        ids.append(run_dir.name)

    env = {"PATH": str(Path(ENTRY).parent), "HOME": str(tmp_path)}

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [ENTRY, *args, "--results", str(results)],
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
            cwd=tmp_path,
        )

    listed = cli("runs")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[0]: line.split() for line in listed.stdout.splitlines()[1:]}
    assert list(rows) == ids
    assert all("interrupted" in row for row in rows.values())
    opened = cli("open", ids[0])
    assert opened.returncode == 0, opened.stderr
    assert opened.stdout.endswith(f"{results / ids[0] / 'index.html'}\n")
    compared = cli("compare", "previous", "latest")
    assert compared.returncode == 0, compared.stderr
    assert "interrupted -> interrupted" in compared.stdout
