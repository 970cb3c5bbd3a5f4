"""Charts and tables of experiments.report, on histories built by hand with known answers."""

from __future__ import annotations

import base64

import numpy as np
import pytest
from matplotlib.collections import LineCollection
from matplotlib.colors import to_hex, to_rgba
from matplotlib.patches import Rectangle

from experiments import report
from experiments.history import History
from experiments.result import Result, Verdict
from tests import histories


@pytest.fixture
def history() -> History:
    """1 create ok, 1 create coupon_exists; claims: 2 ok, 5 no_stock; 2 gets ok."""
    op = histories.op
    return histories.history(
        op(0, "create", 0, 1, worker=0),
        op(1, "create", 0, 2, "coupon_exists", worker=1),
        op(2, "claim", 2, 5, worker=0),
        op(3, "claim", 3, 10, worker=1, phase="fault"),
        *(op(4 + i, "claim", 5, 15 + i, "no_stock", worker=2 + i, phase="fault") for i in range(5)),
        op(9, "get", 20, 24, worker=0),
        op(10, "get", 21, 26, worker=1),
    )


@pytest.fixture
def result(history: History) -> Result:
    return Result(
        scenario="hand_made",
        seed=42,
        layer="service",
        strategy="row_lock",
        params={"stock": 2},
        history=history,
        verdicts=[
            Verdict("conservation", True, "all fine", {"coupons": 1}),
            Verdict("claim_counts", False, "got 3 ok, expected 2", {"got": 3, "expected": 2}),
            Verdict("order", None, "could not tell"),
        ],
        summary={"final_stock": {"c": 0}},
    )


def test_outcome_table_counts_every_result_kind_per_operation(history: History) -> None:
    table = report.outcome_table(history)
    assert list(table.index) == ["create", "claim", "get"]
    assert table.loc["claim", "ok"] == 2
    assert table.loc["claim", "no_stock"] == 5
    assert table.loc["claim", "coupon_exists"] == 0
    assert table.loc["create", "coupon_exists"] == 1
    assert list(table["total"]) == [2, 7, 2]


def test_outcome_chart_stacks_one_bar_per_kind_and_result_in_its_colour(result: Result) -> None:
    fig = report.outcome_chart(result)
    (ax,) = fig.axes
    # 3 operation kinds x 3 result kinds present (ok, coupon_exists, no_stock).
    assert len(ax.patches) == 9
    by_colour: dict[str, list[float]] = {}
    for bar in ax.patches:
        by_colour.setdefault(to_hex(bar.get_facecolor()), []).append(bar.get_width())
    assert by_colour[report.RESULT_COLOURS["ok"]] == [1, 2, 2]
    assert by_colour[report.RESULT_COLOURS["no_stock"]] == [0, 5, 0]
    assert by_colour[report.RESULT_COLOURS["coupon_exists"]] == [1, 0, 0]
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == ["ok", "coupon_exists", "no_stock"]
    assert "hand_made" in ax.get_title()
    assert "seed 42" in ax.get_title()


def test_latency_ecdf_draws_exact_latencies_with_quantiles(history: History) -> None:
    fig = report.latency_ecdf(history, kind="claim")
    (ax,) = fig.axes
    steps = [line for line in ax.lines if line.get_drawstyle() == "steps-post"]
    assert len(steps) == 2  # ok and no_stock
    colours = {to_hex(line.get_color()) for line in steps}
    assert colours == {report.RESULT_COLOURS["ok"], report.RESULT_COLOURS["no_stock"]}
    no_stock = next(s for s in steps if s.get_label().startswith("no_stock"))
    # Exact values, no bucketing: 10..14 ms, each a fifth of the curve.
    assert np.allclose(no_stock.get_xdata(), [10, 11, 12, 13, 14])
    assert np.allclose(no_stock.get_ydata(), [0.2, 0.4, 0.6, 0.8, 1.0])
    markers = [line for line in ax.lines if line.get_linestyle() == "None"]
    assert len(markers) == 6  # p50, p90, p99 for each curve
    p50_no_stock = [
        (m.get_xdata()[0], m.get_ydata()[0])
        for m in markers
        if to_hex(m.get_color()) == report.RESULT_COLOURS["no_stock"] and m.get_marker() == "o"
    ]
    assert p50_no_stock == [(12.0, 0.5)]
    assert "p50 12 ms" in no_stock.get_label()


def test_latency_ecdf_by_phase_groups_by_label(history: History) -> None:
    fig = report.latency_ecdf(history, by="phase")
    labels = [
        line.get_label().split(" ")[0] for line in fig.axes[0].lines if line.get_label()[0] != "_"
    ]
    assert labels == ["(none)", "fault"]
    with pytest.raises(ValueError, match="by must be"):
        report.latency_ecdf(history, by="worker")


def test_rolling_stats_count_ops_completed_in_each_window() -> None:
    # One op completes every 100 ms with latency i ms; a 250 ms window holds 3 (or fewer).
    ops = [histories.op(i, "claim", i * 100 - i, i * 100, worker=0) for i in range(1, 11)]
    stats = report.rolling_stats(History(ops=ops, origin_ns=0), window_s=0.25)
    assert list(stats["n"]) == [1, 2, 3, 3, 3, 3, 3, 3, 3, 3]
    assert np.allclose(stats["ops_per_s"], stats["n"] / 0.25)
    assert list(stats["p50_ms"])[-1] == 9.0  # window holds 8, 9, 10 ms
    # The one quantile definition (figures.quantile): linear between 9 and 10 ms.
    assert list(stats["p99_ms"])[-1] == pytest.approx(9.98)
    fig = report.latency_over_time(History(ops=ops, origin_ns=0), window_s=0.25)
    top, bottom = fig.axes
    assert [line.get_label() for line in top.lines] == ["p50", "p90", "p99"]
    assert np.allclose(bottom.lines[0].get_ydata(), stats["ops_per_s"])


def test_timeline_has_one_segment_per_op_coloured_by_result(history: History) -> None:
    fig = report.timeline(history, fault_phase="fault")
    (ax,) = fig.axes
    (segments,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(segments.get_segments()) == len(history)
    ops = list(history)
    for seg, op, colour in zip(segments.get_segments(), ops, segments.get_colors(), strict=True):
        assert seg[0][0] == pytest.approx(op.invoke_ns / 1e9)
        assert seg[1][0] == pytest.approx(op.complete_ns / 1e9)
        assert seg[0][1] == seg[1][1]  # horizontal, on its worker's row
        assert tuple(colour) == pytest.approx(to_rgba(report.RESULT_COLOURS[op.result]))
    # The fault phase spans 3 ms (first invoke) to 19 ms (last no_stock completes).
    (shade,) = [p for p in ax.patches if p.get_label() == "phase: fault"]
    assert isinstance(shade, Rectangle)
    assert shade.get_x() == pytest.approx(0.003)
    assert shade.get_x() + shade.get_width() == pytest.approx(0.019)


def test_timeline_without_fault_phase_shades_nothing(history: History) -> None:
    fig = report.timeline(history)
    assert not [p for p in fig.axes[0].patches if str(p.get_label()).startswith("phase")]


def test_unknown_result_kind_still_gets_a_colour() -> None:
    assert report.colour_of("something_new") not in report.RESULT_COLOURS.values()
    assert len(set(report.RESULT_COLOURS.values())) == len(report.RESULT_COLOURS)


def test_png_data_uri_and_notebook_display_are_real_pngs(result: Result) -> None:
    fig = report.outcome_chart(result)
    uri = report.to_data_uri(fig)
    assert uri.startswith("data:image/png;base64,")
    assert base64.b64decode(uri.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert isinstance(fig, report.Chart)
    assert fig._repr_png_()[:8] == b"\x89PNG\r\n\x1a\n"


def test_verdict_table_lists_every_check_with_its_figures(result: Result) -> None:
    table = report.verdict_table(result)
    assert list(table["check"]) == ["conservation", "claim_counts", "order"]
    assert list(table["verdict"]) == ["pass", "FAIL", "unknown"]
    assert table.loc[1, "figures"] == "got=3, expected=2"


def test_summary_table_shows_identity_params_and_figures(result: Result) -> None:
    table = report.summary_table(result)
    assert table.loc["seed", "value"] == "42"
    assert table.loc["param stock", "value"] == "2"
    # A mapping figure is one row per key, not a dict printed into one cell.
    assert table.loc["final_stock c", "value"] == "0"
    assert "final_stock" not in table.index
    assert table.loc["operations", "value"] == "11 (5 without a phase, 6 fault)"


def test_tables_show_whole_text_left_aligned_with_coloured_verdicts(result: Result) -> None:
    long_detail = "claim: got {'no_stock': 99, 'ok': 1}, expected {'no_stock': 98, 'ok': 2}"
    result.verdicts.append(Verdict("claim_rows", False, long_detail))
    page = report.verdict_table(result)._repr_html_()
    # pandas' own repr cuts a cell at 50 characters: the whole detail must be there.
    assert long_detail.replace("'", "&#x27;") in page or long_detail in page
    assert "text-align: left" in page
    assert "background: #cf222e" in page  # a FAIL cell is red
    assert "<th" in page
    assert ">0<" not in page  # no row numbers
    assert isinstance(report.summary_table(result), report.Table)
    assert isinstance(report.outcome_table(result), report.Table)
    summary = report.summary_table(result)._repr_html_()
    assert ">final_stock c<" in summary
