"""Sweep charts, tables and conclusion, on tables built by hand (every branch decided)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from experiments import sweep_report as sr
from experiments.report import Chart
from experiments.sweep import REAL_STRATEGIES, Sweep


def _run(strategy: str, seed: int, ok: int, **extra: Any) -> dict[str, Any]:
    mutant = strategy not in REAL_STRATEGIES
    return {
        "scenario": "flash_sale",
        "strategy": strategy,
        "layer": "service",
        "seed": seed,
        "kind": "mutant" if mutant else "strategy",
        "equivalent": False,
        "status": "pass" if ok == 5 else "FAIL",
        "failed_checks": "" if ok == 5 else "claim_counts",
        "throughput_ops_s": {"atomic": 1000.0, "row_lock": 250.0}.get(strategy, 100.0) + seed,
        "p50_ms": 10.0 + seed,
        "p99_ms": {"atomic": 20.0, "row_lock": 80.0}.get(strategy, 50.0) + seed,
        "start_spread_ms": 2.0,
        "peak_in_flight": 50,
        "retries_per_claim": 0.2 if strategy == "serializable" else None,
        "retries": 10 if strategy == "serializable" else None,
        "lock_wait_per_claim_ms": {"row_lock": 12.0, "advisory": 30.0}.get(strategy, 0.0),
        "claim_ok": ok,
        "claim_no_stock": 50 - ok,
        "create_ok": 1,
        **extra,
    }


def _ops(runs: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for r in runs:
        for i in range(50):
            rows.append(
                {
                    **{k: r[k] for k in ("scenario", "strategy", "layer", "seed")},
                    "kind": "claim",
                    "phase": "load",
                    "latency_ms": 1.0 + i + r["seed"],
                }
            )
    return pd.DataFrame(rows)


def _sweep(runs: list[dict[str, Any]], checks: list[dict[str, Any]] | None = None) -> Sweep:
    return Sweep(pd.DataFrame(runs), _ops(runs), pd.DataFrame(checks or []), {})


@pytest.fixture
def correct() -> Sweep:
    return _sweep([_run(s, seed, 5) for s in REAL_STRATEGIES for seed in (1, 2, 3)])


@pytest.mark.slow
def test_a_correct_sweep_is_degenerate_and_every_chart_draws(correct: Sweep) -> None:
    assert sr.not_degenerate(correct) == []
    values = sr.outcome_values(correct)
    assert list(values["claim_ok"]) == ["5"] * len(REAL_STRATEGIES)
    assert list(values["seeds"]) == [3] * len(REAL_STRATEGIES)
    for chart in (
        sr.outcome_distribution,
        sr.latency_ecdf,
        sr.latency_bands,
        sr.throughput_chart,
        sr.start_chart,
        sr.retries_chart,
        sr.lock_wait_chart,
        sr.detection_chart,
    ):
        fig = chart(correct)
        assert isinstance(fig, Chart)
        assert fig._repr_png_().startswith(b"\x89PNG")
    table = sr.cell_table(correct)
    assert list(table["pass"]) == [3] * len(REAL_STRATEGIES)
    # A figure a strategy does not have reads "-", never "nan".
    assert table.set_index("strategy").at["atomic", "retries/claim"] == "-"


def test_an_outcome_that_varies_with_the_seed_is_named(correct: Sweep) -> None:
    runs = [*correct.runs.to_dict("records"), _run("atomic", 4, 6)]
    varied = sr.not_degenerate(_sweep(runs))
    assert sorted(varied) == [
        "flash_sale/atomic/service claim_no_stock: [44, 45]",
        "flash_sale/atomic/service claim_ok: [5, 6]",
    ]
    assert "5, 6" in set(sr.outcome_values(_sweep(runs))["claim_ok"])


def test_a_mutant_that_varies_is_not_a_failed_expectation() -> None:
    sweep = _sweep([_run("lost_update", 1, 5), _run("lost_update", 2, 9)])
    assert sr.not_degenerate(sweep) == []
    assert sr.not_degenerate(sweep, real_only=False) != []


def test_the_conclusion_is_computed_from_the_figures(correct: Sweep) -> None:
    text = sr.conclusion(correct)
    assert f"All {len(REAL_STRATEGIES)} strategies passed every check on every seed" in text
    # atomic 1002 ops/s median against advisory's and serializable's 102: 9.8x.
    assert "`atomic` had the highest median throughput (1002 ops/s), 9.8x" in text
    assert "median across seeds of each run's claim p99 was lowest for `atomic` (22.0 ms)" in text
    assert "waited longest for locks under `advisory` (30.0 ms" in text
    assert "`serializable` retried 0.20 times per claim" in text
    failing = _sweep([*correct.runs.to_dict("records"), _run("row_lock", 4, 6)])
    assert "`row_lock` FAILED a check on some seed" in sr.conclusion(failing)
    assert "some outcome counts varied" in sr.conclusion(failing)


def test_detection_rates_per_mutant_and_check() -> None:
    runs = [_run("lost_update", seed, 5 if seed == 1 else 7) for seed in (1, 2, 3, 4)]
    checks = [
        {
            "scenario": "flash_sale",
            "strategy": "lost_update",
            "layer": "service",
            "seed": seed,
            "check": check,
            "verdict": "FAIL" if seed > 1 and check == "claim_counts" else "pass",
        }
        for seed in (1, 2, 3, 4)
        for check in ("claim_counts", "conservation")
    ]
    table = sr.detection_rates(_sweep(runs, checks))
    rates = table.set_index(["mutant", "scenario", "check"])["rate"]
    assert rates[("lost_update", "flash_sale", "any check")] == 0.75
    assert rates[("lost_update", "flash_sale", "claim_counts")] == 0.75
    assert rates[("lost_update", "flash_sale", "conservation")] == 0.0
    assert set(table["runs"]) == {4}
    assert isinstance(sr.detection_chart(_sweep(runs, checks)), Chart)


def test_nothing_to_draw_is_said_not_drawn_empty() -> None:
    crashed = _sweep(
        [
            {
                "scenario": "flash_sale",
                "strategy": "atomic",
                "layer": "service",
                "seed": 1,
                "kind": "strategy",
                "status": "error",
                "error": "boom",
            }
        ]
    )
    assert sr.conclusion(crashed).startswith("No real strategy finished a run")
    assert isinstance(sr.throughput_chart(crashed), Chart)
    assert sr.detection_rates(crashed).empty


def test_the_conclusion_says_which_p99_is_which_and_quotes_the_ecdfs(correct: Sweep) -> None:
    """A median across seeds (91.6 ms) stood beside the pooled ECDF's (165.8 ms) unnamed."""
    text = sr.conclusion(correct)
    assert "median across seeds of each run's claim p99 was lowest for `atomic` (22.0 ms)" in text
    pooled = sr.pooled_p99(correct, "claim", "flash_sale", "atomic", "service")
    assert f"pooled over every seed's claims (the ECDF's figure) `atomic` {pooled:.1f} ms" in text
    legend = [t.get_text() for t in sr.latency_ecdf(correct).axes[0].get_legend().get_texts()]
    assert f"atomic service (pooled p99 {pooled:.1f} ms)" in legend


def test_an_empty_section_says_why_it_is_omitted() -> None:
    """The Retries and Mutants sections rendered empty for a sweep without those runs."""
    sweep = _sweep([_run(s, 1, 5) for s in ("row_lock", "atomic")])
    rates = sr.detection_rates(sweep)
    assert rates.empty
    assert rates._repr_html_() == (
        "<p><em>Omitted: no mutant in this sweep (strategies row_lock, atomic); "
        "add --strategy mutants.</em></p>"
    )
    for chart, word in ((sr.retries_chart, "serializable"), (sr.detection_chart, "mutant")):
        texts = [t.get_text() for ax in chart(sweep).axes for t in ax.texts]
        assert any(t.startswith("omitted: no") and word in t for t in texts), texts


def test_the_page_and_the_console_say_one_time() -> None:
    """The page's header said 3 s where the console said 11.3 s."""
    assert sr.runs_time({"elapsed_s": 3.04}) == "runs took 3.0 s"
