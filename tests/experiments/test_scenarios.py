"""Every catalog scenario, on both layers and every strategy, against the real database."""

from __future__ import annotations

import threading

import pytest

from coupon_core import available_strategies
from experiments import scenarios
from experiments.lab import open_lab
from experiments.result import Result
from experiments.scenarios import SCENARIOS
from experiments.spec import SpecError

STRATEGIES = available_strategies()
# The concurrency catalog; the fault scenarios have their own tests (test_fault_scenarios).
NAMES = list(scenarios.CATALOG)
# Each behaviour once, at the level that shows it: scale is a one-coupon stampede on a
# stock, the shape flash_sale and zero_stock_stampede run under every strategy here (and
# test_mutants' test_real_strategies_show_nothing through the pipeline); what is scale's
# own (its figures at 100, 200 and 500 workers) is shown at full size on both layers by
# test_scale_full_sizes. A small scale in the matrix and over HTTP showed nothing more.
MATRIX = [n for n in NAMES if n != "scale"]


def _explain(result: Result) -> str:
    failed = "; ".join(f"{v.name}: {v.label}: {v.detail}" for v in result.failed)
    return f"{result.scenario} seed={result.seed} {result.layer}/{result.strategy}: {failed}"


def test_registry_lists_the_catalog() -> None:
    assert list(scenarios.SCENARIOS) == [
        *scenarios.CATALOG,
        *scenarios.FAULTS,
        *scenarios.REPLICATION,
        *scenarios.DISTRIBUTED,
        *scenarios.ISOLATION,
    ]
    assert NAMES == [
        "mixed_load",
        "zero_stock_stampede",
        "constraint_storm",
        "interleaved_create_claim",
        "flash_sale",
        "double_dip",
        "scale",
    ]
    for name, scenario in scenarios.SCENARIOS.items():
        assert scenario.name == name
        assert scenario.title
        assert scenario.description
        params = scenario.params()
        assert params["layer"] in ("service", "http")
        assert params["strategy"] == "row_lock"
        assert params["seed"] is None
    assert scenarios.SCENARIOS["zero_stock_stampede"].defaults == {"stock": 1, "users": 100}
    with pytest.raises(SpecError, match="unknown parameter"):
        scenarios.SCENARIOS["flash_sale"].params(stokc=5)
    with pytest.raises(KeyError, match="unknown scenario"):
        scenarios.run("no_such_scenario")


@pytest.mark.chaos
@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("name", MATRIX)
def test_scenario_on_the_service_layer(db_url: str, name: str, strategy: str) -> None:
    result = scenarios.run(name, database_url=db_url, strategy=strategy)
    assert result.passed, _explain(result)
    assert result.verdicts
    assert result.params["strategy"] == strategy
    assert result.params["seed"] == result.seed
    assert result.summary["outcomes"]
    # A verdict the scenario defined for itself is among them, not only the invariants.
    assert len(result.verdicts) > 9


@pytest.mark.chaos
@pytest.mark.parametrize("name", MATRIX)
def test_scenario_on_the_http_layer(db_url: str, name: str) -> None:
    result = scenarios.run(name, database_url=db_url, layer="http")
    assert result.passed, _explain(result)
    claims = [o for o in result.history.of_kind("claim") if o.phase != "setup"]
    assert claims
    assert all(o.http_status is not None for o in claims)
    # What `coupon-chaos list` says this scenario runs is what it ran, in its order.
    spec = SCENARIOS[name].spec()
    assert [v.name for v in result.verdicts] == list(SCENARIOS[name].checks(spec))
    assert result.verdict("contract_kept").figures["judged"] >= len(claims)


@pytest.mark.chaos
@pytest.mark.slow
@pytest.mark.parametrize("layer", ["service", "http"])
def test_scale_full_sizes(db_url: str, layer: str) -> None:
    result = scenarios.run("scale", database_url=db_url, layer=layer)
    assert result.passed, _explain(result)
    # What the matrix and the HTTP test assert of every other catalog scenario.
    assert [v.name for v in result.verdicts] == list(
        SCENARIOS["scale"].checks(SCENARIOS["scale"].spec())
    )
    assert result.summary["outcomes"]
    if layer == "http":
        claims = [o for o in result.history.of_kind("claim") if o.phase != "setup"]
        assert all(o.http_status is not None for o in claims)
        assert result.verdict("contract_kept").figures["judged"] >= len(claims)
    latency = result.summary["latency_by_size"]
    assert set(latency) == {"100", "200", "500"}
    for quantiles in latency.values():
        assert (
            0
            < quantiles["p50_ms"]
            <= quantiles["p90_ms"]
            <= quantiles["p99_ms"]
            <= quantiles["max_ms"]
        )
    assert result.outcomes()["claim"] == {"ok": 80, "no_stock": 720}


@pytest.mark.chaos
def test_same_seed_same_operations(db_url: str) -> None:
    def ops(result: Result) -> list[tuple[object, ...]]:
        prefix = result.summary["prefix"]
        return sorted(
            (o.op_id, o.worker, o.kind, o.coupon.removeprefix(prefix), o.user, o.amount)
            for o in result.history.ops
        )

    a = scenarios.run("mixed_load", database_url=db_url, seed=42)
    b = scenarios.run("mixed_load", database_url=db_url, seed=42)
    c = scenarios.run("mixed_load", database_url=db_url, seed=43)
    assert a.seed == b.seed == 42
    assert a.summary["prefix"] != b.summary["prefix"]
    assert ops(a) == ops(b)
    assert ops(a) != ops(c)


@pytest.mark.chaos
def test_seed_is_printed_and_recorded(db_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    result = scenarios.run("double_dip", database_url=db_url)
    out = capsys.readouterr().out
    assert f"[double_dip] seed={result.seed} layer=service strategy=row_lock" in out
    assert result.params == {
        "seed": result.seed,
        "layer": "service",
        "strategy": "row_lock",
        "database_url": db_url,
        "op_timeout_s": 10.0,
        "run_timeout_s": 60.0,
        "pool_max": None,
        "cleanup": False,
        "target": None,
        "stock": 100,
        "requests": 10,
    }
    summary = result.summary
    assert summary["final_stock"] == {f"{summary['prefix']}-one": 99}
    assert summary["start_spread_ms"] is not None
    assert summary["throughput_ops_s"] > 0


@pytest.mark.chaos
def test_scenarios_can_run_side_by_side(db_url: str) -> None:
    results: list[Result] = []
    lock = threading.Lock()

    def go(name: str) -> None:
        r = scenarios.run(name, database_url=db_url)
        with lock:
            results.append(r)

    threads = [
        threading.Thread(target=go, args=(n,)) for n in ("flash_sale", "zero_stock_stampede")
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 2
    for r in results:
        assert r.passed, _explain(r)


@pytest.mark.chaos
def test_lab_starts_and_stops_its_own_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with open_lab(scenario="own") as lab:
        handle = lab.database
        assert handle is not None
        assert lab.conn.execute("SELECT 1").fetchone() == (1,)
    from coupon_core import EmbeddedPostgres

    assert isinstance(handle, EmbeddedPostgres)
    assert not handle.is_running()


def test_run_offers_exactly_the_registry_groups() -> None:
    from experiments.commands.run import _GROUPS
    from experiments.scenarios import GROUPS, SCENARIOS

    assert ("all", *GROUPS) == _GROUPS
    registered = [name for members in GROUPS.values() for name in members]
    assert sorted(registered) == sorted(SCENARIOS), "every scenario in exactly one group"
