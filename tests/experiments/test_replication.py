"""Replication faults and scenarios on a real replicated cluster: links, failover, stale reads."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from coupon_core.cluster import ReplicatedCluster
from coupon_core.database import replicated
from experiments import scenarios
from experiments.faults.replication import Failover, FailoverCommand, ReplicationLinks
from experiments.scenarios import SCENARIOS

pytestmark = pytest.mark.chaos


@pytest.fixture
def cluster() -> Iterator[ReplicatedCluster]:
    c = replicated(standbys=1, mode="async")
    try:
        yield c
    finally:
        c.close()


def count(url: str, sql: str) -> int:
    with psycopg.connect(url, autocommit=True, connect_timeout=5) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return int(row[0])


def test_a_cut_link_holds_the_wal_until_healed(cluster: ReplicatedCluster) -> None:
    standby = cluster.nodes[1]
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v int)")
    links = ReplicationLinks(cluster).start()
    try:
        cluster.wait_caught_up()
        links.cut()
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute("INSERT INTO t VALUES (1)")  # async: acknowledged by the primary alone
        time.sleep(0.5)
        assert count(standby.url, "SELECT count(*) FROM t") == 0  # nothing crosses a cut link
        links.heal()
        cluster.wait_caught_up()
        assert count(standby.url, "SELECT count(*) FROM t") == 1
    finally:
        links.stop()


def test_failover_nemesis_cuts_kills_and_promotes(cluster: ReplicatedCluster) -> None:
    links = ReplicationLinks(cluster).start()
    try:
        f = Failover(cluster, links, delay_s=0.0, cut_before_s=0.1, detect_s=0.0).start()
        assert f.wait(120)
        f.stop()
    finally:
        links.stop()
    assert (f.old_primary, f.new_primary) == ("node0", "node1")
    assert [w.phase for w in f.windows.windows] == ["cut", "down"]
    assert cluster.primary.name == "node1"
    assert count(cluster.url, "SELECT count(*) FROM pg_stat_activity") >= 1


def test_switchover_stops_cleanly_promotes_and_the_old_primary_rejoins(
    cluster: ReplicatedCluster,
) -> None:
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("CREATE TABLE t (v int)")
        conn.execute("INSERT INTO t VALUES (1)")
    f = Failover(cluster, how="switchover", delay_s=0.0, detect_s=0.0).start()
    assert f.wait(120)
    f.stop()
    assert [e["event"] for e in cluster.events] == ["stop", "promote"]
    old = cluster.node("node0")
    cluster.rejoin(old)
    cluster.wait_streaming()
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        assert conn.info.port == cluster.node("node1").port
        conn.execute("INSERT INTO t VALUES (2)")
    cluster.wait_caught_up()
    assert count(old.url, "SELECT count(*) FROM t") == 2


def test_failover_refuses_a_cut_without_links(cluster: ReplicatedCluster) -> None:
    with pytest.raises(ValueError, match="needs ReplicationLinks"):
        Failover(cluster, None, cut_before_s=0.5)
    with pytest.raises(ValueError, match="how must be"):
        Failover(cluster, None, how="unplug")  # type: ignore[arg-type]


def test_failover_command_runs_once_bounded_and_keeps_its_status(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    cmd = FailoverCommand(f"{sys.executable} -c \"open('{marker}', 'w').close()\"", delay_s=0.0)
    cmd.start()
    assert cmd.wait(60)
    cmd.stop()
    assert marker.exists()
    assert cmd.returncode == 0
    assert cmd.error is None
    assert [w.phase for w in cmd.windows.windows] == ["down"]
    missing = FailoverCommand("/nonexistent/failover-tool --force", delay_s=0.0).start()
    assert missing.wait(60)
    missing.stop()
    assert isinstance(missing.error, FileNotFoundError)
    with pytest.raises(ValueError, match="empty"):
        FailoverCommand("   ")


def test_bad_parameters_are_refused_before_anything_starts() -> None:
    with pytest.raises(ValueError, match="mode must be one of"):
        scenarios.run("failover", mode="eventual")
    with pytest.raises(ValueError, match="read_from must be"):
        scenarios.run("stale_reads", read_from="cache")
    with pytest.raises(ValueError, match=r"lag_s=-1\.0 is out of range"):
        scenarios.run("stale_reads", lag_s=-1.0)


def test_failover_by_url_without_a_command_is_skipped_not_passed() -> None:
    result = scenarios.run(
        "failover", database_url="postgresql://app:s3cret@127.0.0.1:1,127.0.0.1:2/db"
    )
    assert result.passed is False
    assert result.verdict("failover_command").passed is None
    assert "s3cret" not in str(result.to_dict())


def test_failover_by_url_runs_its_command_as_the_fault(
    cluster: ReplicatedCluster, tmp_path: Path
) -> None:
    """A cluster of the user's, given by its multi-host URL, with a failover command: the
    command is the fault (a clean switchover here: the primary stopped fast, which sends
    its WAL first, then the standby promoted), and no acknowledged claim is lost."""
    from coupon_core.embedded import bin_dir

    pg_ctl = bin_dir() / "pg_ctl"
    primary, standby = cluster.primary, cluster.standby_nodes()[0]
    script = tmp_path / "switchover.sh"
    # The embedded servers run as their own system user when the lab runs as root.
    user = primary.db._as_user
    as_user = f"runuser -u {user} -- " if user else ""
    script.write_text(
        "set -e\n"
        f"{as_user}{pg_ctl} -D {primary.db.data_dir} -w -m fast stop\n"
        f"{as_user}{pg_ctl} -D {standby.db.data_dir} -w promote\n"
    )
    command = f"bash {script}"  # the command runs without a shell
    result = scenarios.run(
        "failover", seed=2, database_url=cluster.url, failover_command=command, delay_s=0.5
    )
    assert result.verdict("failover_command").passed is True, result.verdict("failover_command")
    assert result.verdict("no_lost_acknowledged_claims").passed is True
    assert result.verdict("failover_done").passed is None  # the lab's own cluster only
    assert result.passed, [v for v in result.verdicts if v.passed is False]
    assert result.params["failover_command"] == "***"
    assert str(script) not in str(result.to_dict())


def test_failover_sync_over_http_loses_nothing() -> None:
    result = scenarios.run("failover", seed=3, layer="http", mode="sync", rejoin=False)
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert result.verdict("no_lost_acknowledged_claims").passed is True
    assert result.verdict("linearizable").passed is True
    assert set(result.outcomes()["claim"]) <= {"ok", "unavailable", "unknown"}
    assert result.summary["unavailable_s"] is not None
    assert "findings" not in result.summary
    # What `coupon-chaos list` declares; loss_caught (an unsafe configuration's) and
    # old_primary_rejoined (rejoin=False) skipped, each with its reason.
    assert [v.name for v in result.verdicts] == list(SCENARIOS["failover"].checks())
    assert result.verdict("loss_caught").skipped
    assert result.verdict("old_primary_rejoined").skipped


def test_failover_async_with_a_cut_link_loses_claims_and_the_lab_names_them() -> None:
    result = scenarios.run("failover", seed=4, mode="async", cut_link=True)
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    finding = result.summary["findings"]["no_lost_acknowledged_claims"]
    assert finding["passed"] is False
    lost = finding["figures"]["lost_count"]
    assert lost > 0
    assert result.verdict("loss_caught").passed is True
    evidence = result.verdict("lost_claims_on_old_primary")
    assert evidence.figures["on_old_primary"] == lost
    assert result.verdict("old_primary_rejoined").passed is True
    # The failures the loss explains are marked as its finding, not hidden.
    explained = {v.name for v in result.findings}
    assert explained == set(result.summary["findings"])
    assert "no_lost_acknowledged_claims" in explained
    assert [v.name for v in result.verdicts] == list(SCENARIOS["failover"].checks())


def test_stale_reads_on_the_primary_stay_linearizable() -> None:
    result = scenarios.run("stale_reads", seed=5, read_from="primary", ops_per_worker=15)
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert result.verdict("stale_reads").passed is True
    assert result.verdict("linearizable").passed is True
    assert {v.name for v in result.verdicts} == set(SCENARIOS["stale_reads"].checks())


def test_stale_reads_on_a_lagging_standby_are_proved_and_flagged() -> None:
    result = scenarios.run("stale_reads", seed=6, read_from="standby", ops_per_worker=15)
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert result.summary["stale_reads"] > 0
    assert result.summary["findings"]["linearizable"]["passed"] is False
    assert len(result.summary["witness_op_ids"]) == 2


def test_serve_refuses_a_read_url_with_several_processes() -> None:
    import subprocess

    cli = Path(sys.executable).with_name("coupon-chaos")
    proc = subprocess.run(
        [str(cli), "serve", "--read-url", "postgresql://x@127.0.0.1:1/db", "--workers", "2"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "--read-url works with one server process" in proc.stderr
