"""Locust master and worker processes driving the lab's plans: real processes, real server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.history import History
from experiments.linearizability import MAX_CLOCK_UNCERTAINTY_MS
from experiments.locust import DIE_ENV, SERIAL_ENV, SKEW_ENV, STEP_ENV, run_locust
from experiments.locust._merge import LOST
from experiments.locust._protocol import PING_TIMEOUT_S
from experiments.result import Result

chaos = pytest.mark.chaos

HOUR_MS = 3_600_000


def _load_ids(history: History) -> list[int]:
    return sorted(o.op_id for o in history.ops if o.phase != "setup")


def _stampede(
    db_url: str,
    out: Path,
    *,
    seed: int,
    users: int,
    worker_env: dict[int, dict[str, str]] | None = None,
    run_timeout_s: float = 60.0,
) -> Result:
    """zero_stock_stampede from 2 Locust worker processes: the run every test here plants in."""
    return run_locust(
        "zero_stock_stampede",
        processes=2,
        seed=seed,
        database_url=db_url,
        out_dir=out,
        users=users,
        worker_env=worker_env,
        run_timeout_s=run_timeout_s,
    )


def test_the_lab_never_imports_locust() -> None:
    # Importing locust monkey-patches the standard library with gevent: the lab's
    # process (and pytest's) must be able to use all of experiments.locust without it.
    code = (
        "import sys\n"
        "import experiments.locust, experiments.scenarios, experiments.commands.locust\n"
        "from experiments.cli import build_parser\n"
        "build_parser()\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('locust', 'gevent'))\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["locust"], "give a SCENARIO"),
        (["locust", "scale"], "Locust cannot drive 'scale'"),
        (["locust", "zero_stock_stampede", "-p", "users"], "expected NAME=VALUE"),
        (["locust", "zero_stock_stampede", "-p", "colour=1"], "no parameter 'colour'"),
        (["locust", "--master-host", "h:1", "zero_stock_stampede"], "the master decides"),
        (["locust", "--master-host", "h:port"], "the port must be a number"),
        (["locust", "zero_stock_stampede", "--processes", "-1"], "--processes must be"),
    ],
)
def test_bad_input_is_one_clear_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2  # a wrong argument: the usage exit code
    err = capsys.readouterr().err
    assert message in err, err
    assert "Traceback" not in err


@chaos
def test_stampede_over_two_worker_processes(db_url: str, tmp_path: Path) -> None:
    result = _stampede(db_url, tmp_path, seed=11, users=100)
    assert result.outcomes()["claim"] == {"ok": 1, "no_stock": 99}, result.outcomes()
    for name in ("linearizable", "swarm_complete", "claim_counts", "final_stock", "no_leaks"):
        assert result.verdict(name).passed, result.verdict(name).detail
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert _load_ids(result.history) == list(range(100))
    s = result.summary
    assert sorted(s["clocks"]) == ["locust-0", "locust-1"]
    assert sum(c["plan_workers"] for c in s["clocks"].values()) == 100
    assert set(s["peak_overlap_by_process"]) == {"locust-0", "locust-1"}
    assert 2 <= s["peak_overlap"] <= 100
    assert s["start_spread_ms"] is not None
    assert s["start_spread_ms"] >= 0
    stats = s["locust_stats"]
    assert sum(e["requests"] for e in stats.values()) == 100
    assert stats["claim:ok"]["requests"] == 1
    assert Path(s["locust_html"]).read_text(encoding="utf-8").lstrip().lower().startswith("<!")


@chaos
def test_a_target_server_the_lab_did_not_start(db_url: str, tmp_path: Path) -> None:
    from coupon_core.workers import serve_processes

    with serve_processes(db_url, processes=1) as server:
        result = run_locust(
            "flash_sale",
            processes=1,
            seed=21,
            database_url=db_url,
            target=server.url,
            out_dir=tmp_path,
            users=10,
            stock=3,
        )
    assert result.params["target"] == server.url
    assert result.outcomes()["claim"] == {"ok": 3, "no_stock": 7}
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert not list(tmp_path.rglob("locust-spec.json"))


@chaos
def test_same_seed_same_split(db_url: str, tmp_path: Path) -> None:
    runs = [
        run_locust(
            "flash_sale", processes=2, seed=5, database_url=db_url, out_dir=tmp_path / str(i)
        )
        for i in range(2)
    ]
    splits = [sorted((o.phase, o.user) for o in r.history.ops if o.phase != "setup") for r in runs]
    assert splits[0] == splits[1]
    assert all(r.passed for r in runs), [[(v.name, v.detail) for v in r.failed] for r in runs]


@chaos
def test_clock_skew_is_measured_and_widening_prevents_the_false_alarm(
    db_url: str, tmp_path: Path
) -> None:
    # Worker 0's clock runs two hours behind all along: far more than the run (bounded
    # by run_timeout_s), so at face value its ops land before the coupon was created.
    # Measured by round trips, the offset is corrected within a fraction of a ms.
    result = _stampede(
        db_url, tmp_path, seed=12, users=20, worker_env={0: {SKEW_ENV: str(-2 * HOUR_MS)}}
    )
    clocks = result.summary["clocks"]
    # Locust numbers workers in the order they connect: tell them apart by their offsets.
    skewed, honest = sorted(clocks.values(), key=lambda c: c["offset_ms"])
    assert abs(skewed["offset_ms"] + 2 * HOUR_MS) <= skewed["uncertainty_ms"]
    assert abs(honest["offset_ms"]) <= honest["uncertainty_ms"]
    for c in (skewed, honest):
        assert c["uncertainty_ms"] <= MAX_CLOCK_UNCERTAINTY_MS, c
    linearizable = result.verdict("linearizable")
    assert linearizable.passed, linearizable.detail
    # The verdict states the widening it used, per process: the measured uncertainty.
    widening = linearizable.figures["clock_widening_ms"]
    assert widening == {k: c["uncertainty_ms"] for k, c in clocks.items()}, widening
    assert "widened between processes by locust-0 +-" in linearizable.detail
    assert result.summary["max_clock_uncertainty_ms"] == MAX_CLOCK_UNCERTAINTY_MS
    assert result.params["max_clock_uncertainty_ms"] == MAX_CLOCK_UNCERTAINTY_MS
    checks = result.summary["clock_checks"]
    assert checks["clocked"]["passed"] is True, checks["clocked"]["detail"]
    assert checks["raw"]["passed"] is False, "face-value clocks should raise a false alarm"
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert result.outcomes()["claim"] == {"ok": 1, "no_stock": 19}


@chaos
def test_a_clock_step_past_the_bound_is_unknown_never_a_pass(db_url: str, tmp_path: Path) -> None:
    # Worker 1's clock steps an hour back at the start instant, after its offset was
    # first measured: the estimates before and after the run bound it only to +-30 min,
    # a widening that would excuse anything. The verdict is unknown, with the figure.
    result = _stampede(
        db_url, tmp_path, seed=12, users=20, worker_env={1: {STEP_ENV: str(-HOUR_MS)}}
    )
    clocks = result.summary["clocks"]
    stepped_name, stepped = min(clocks.items(), key=lambda kv: kv[1]["offset_ms"])
    # The step lies within the combined bound: between the estimates before and after.
    assert abs(stepped["offset_ms"] - 0) <= stepped["uncertainty_ms"]
    assert abs(stepped["offset_ms"] + HOUR_MS) <= stepped["uncertainty_ms"]
    # No round trip used is longer than the ping timeout.
    assert stepped["uncertainty_ms"] <= HOUR_MS / 2 + 2 * PING_TIMEOUT_S * 1000
    assert result.summary["widening_ms"] >= HOUR_MS / 2
    linearizable = result.verdict("linearizable")
    assert linearizable.passed is None, linearizable.detail
    assert linearizable.figures["clocks_past_bound"] == [stepped_name]
    assert f"{stepped_name} +-{stepped['uncertainty_ms']:.3f} ms" in linearizable.detail
    assert not result.passed
    assert result.status == "unknown", result.status
    checks = result.summary["clock_checks"]
    # The old check (every op widened by +-30 min, no bound) passed it.
    assert checks["widened"]["passed"] is True, checks["widened"]["detail"]
    assert checks["corrected"]["passed"] is False, "unwidened, the step raises a false alarm"
    assert result.outcomes()["claim"] == {"ok": 1, "no_stock": 19}


@chaos
def test_a_worker_that_dies_mid_run(db_url: str, tmp_path: Path) -> None:
    result = _stampede(db_url, tmp_path, seed=13, users=40, worker_env={1: {DIE_ENV: "5"}})
    complete = result.verdict("swarm_complete")
    assert complete.passed is False
    # Locust numbers workers in the order they connect: the dead one is either index.
    lost_workers = complete.figures["lost_workers"]
    assert len(lost_workers) == 1, complete.detail
    dead, alive = f"locust-{lost_workers[0]}", f"locust-{1 - lost_workers[0]}"
    # Every planned op is in the history once; the dead worker's unreported ops are unknown.
    assert _load_ids(result.history) == list(range(40))
    lost = [o for o in result.history.ops if o.message == LOST]
    assert all(o.result == "unknown" and o.phase == dead for o in lost)
    # It dies as its 5th op ends, before any other of its 20 users records one: at
    # least 15 never reached the master (more if its last batch died with it).
    assert len(lost) >= 20 - 5, f"{len(lost)} ops of the dead worker unknown"
    assert sum(o.phase == dead for o in result.history.ops) == 20
    assert result.summary["clocks"][alive]["ops"] == 20
    # The run still ends and is checked: the survivors' history and the tables agree.
    for name in ("linearizable", "conservation", "one_claim_per_user", "no_negative_stock"):
        assert result.verdict(name).passed, result.verdict(name).detail
    assert result.verdict("no_timeouts").passed is False


@chaos
def test_a_swarm_that_never_stampedes_is_no_experiment(db_url: str, tmp_path: Path) -> None:
    """A planted serial swarm (each worker process runs its users' ops one at a time):
    ``stampede_collided`` judges all the worker processes' load, and a run that never
    collided is drawn again, then reported as no experiment, never green."""
    from experiments.pipeline import ATTEMPTS

    # Every attempt within the run bound: on a loaded machine (load 16 on 2 cores) three
    # serial attempts took the default 60 s and the fourth was never drawn.
    serial = {0: {SERIAL_ENV: "1"}, 1: {SERIAL_ENV: "1"}}
    result = _stampede(db_url, tmp_path, seed=17, users=20, worker_env=serial, run_timeout_s=300.0)
    collided = result.verdict("stampede_collided")
    assert collided.passed is False, collided.detail
    assert collided.detail.startswith("not a stampede: peak"), collided.detail
    assert collided.figures["peak_in_flight"] <= 2
    assert [a.status for a in result.attempts] == ["no_experiment"] * ATTEMPTS
    assert result.status == "no_experiment"
    assert not result.passed
