"""Charts and tables from a Result or History: outcomes, latency, throughput, timeline.

Every chart is a ``Chart`` (a matplotlib ``Figure``) on the Agg canvas, built without
pyplot: no global figure registry, nothing to close, safe from any thread, and the
caller decides where the figure goes (a notebook displays it, the index embeds it as
a PNG data URI with ``to_data_uri``). Each result kind has one colour in every chart
(``RESULT_COLOURS``), so "no_stock" is the same orange in the bars, the ECDF and the
timeline.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from experiments import figures
from experiments.history import OP_KINDS, RESULT_KINDS, History
from experiments.result import Result

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "QUANTILES",
    "RESULT_COLOURS",
    "Chart",
    "Table",
    "colour_of",
    "latency_ecdf",
    "latency_over_time",
    "outcome_chart",
    "outcome_table",
    "rolling_stats",
    "summary_table",
    "timeline",
    "to_data_uri",
    "verdict_table",
]

#: One colour per result kind, the same in every chart (colour-blind safe where it can be).
RESULT_COLOURS: dict[str, str] = {
    "ok": "#2ca02c",
    "no_stock": "#ff7f0e",
    "already_claimed": "#9467bd",
    "not_found": "#1f77b4",
    "coupon_exists": "#8c564b",
    "invalid": "#e377c2",
    "unavailable": "#d62728",
    "unknown": "#7f7f7f",
    "server_error": "#000000",
    "contract_violation": "#17becf",
}
#: A result kind this module does not know (a newer history) still gets a visible colour.
_FALLBACK_COLOUR = "#bcbd22"

#: The latency quantiles marked on every latency chart.
QUANTILES: tuple[float, ...] = (0.5, 0.9, 0.99)
_QUANTILE_MARKERS = {0.5: "o", 0.9: "s", 0.99: "^"}

Source = Result | History


class Chart(Figure):
    """A figure that displays itself in a notebook (as PNG) without pyplot's inline backend."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=100)
        return buffer.getvalue()


class Table(pd.DataFrame):
    """A DataFrame that a notebook shows whole: text left-aligned and never cut short.

    pandas' own HTML cuts every cell at 50 characters and right-aligns text, so a check's
    detail read "claim: got {'no_stock': 99, 'ok': 1}, expected..." in the reports.
    Verdicts are coloured (pass green, FAIL red, unknown amber); ``attrs["hide_index"]``
    drops a row number that says nothing.
    """

    def _repr_html_(self) -> str:
        reason = self.attrs.get("empty_reason")
        if self.empty and reason:
            # An empty table rendered as a bare header row: say why there is nothing.
            import html

            return f"<p><em>{html.escape(str(reason))}</em></p>"
        styler = pd.DataFrame(self).style.set_table_styles(
            [
                {"selector": "td", "props": "text-align: left; max-width: 48em;"},
                {"selector": "th", "props": "text-align: left;"},
            ]
        )
        if "verdict" in self.columns:
            styler = styler.map(_verdict_css, subset=["verdict"])
        if self.attrs.get("hide_index"):
            styler = styler.hide(axis="index")
        return styler.format(precision=3).to_html()


_VERDICT_CSS = {
    "pass": "color: #1a7f37; font-weight: bold;",
    "FAIL": "color: #fff; background: #cf222e; font-weight: bold;",
    "unknown": "color: #000; background: #f2cc60; font-weight: bold;",
}


def _verdict_css(value: Any) -> str:
    return _VERDICT_CSS.get(str(value), "")


def colour_of(result_kind: str) -> str:
    return RESULT_COLOURS.get(result_kind, _FALLBACK_COLOUR)


def _history(source: Source) -> History:
    return source.history if isinstance(source, Result) else source


def _title(source: Source, what: str) -> str:
    # Two lines: one long line was cut at the figure's edge (the latency panel's title).
    if isinstance(source, Result):
        return (
            f"{what}\n{source.scenario} · {source.layer} · {source.strategy} · seed {source.seed}"
        )
    return what


def _figure(width: float = 7.5, height: float = 4.0, rows: int = 1) -> tuple[Chart, list[Axes]]:
    fig = Chart(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself as fig.canvas: savefig and inline display need one
    axes = [fig.add_subplot(rows, 1, i + 1) for i in range(rows)]
    return fig, axes


def _ordered_results(present: set[str]) -> list[str]:
    known = [r for r in RESULT_KINDS if r in present]
    return known + sorted(present - set(RESULT_KINDS))


# -- tables ------------------------------------------------------------------------------


def outcome_table(source: Source) -> Table:
    """Counts of each result kind (columns) per operation kind (rows), zeros filled in."""
    counts = _history(source).counts()
    kinds = [k for k in OP_KINDS if k in counts] + sorted(set(counts) - set(OP_KINDS))
    results = _ordered_results({r for by_kind in counts.values() for r in by_kind})
    frame = Table(
        [[counts[k].get(r, 0) for r in results] for k in kinds], index=kinds, columns=results
    )
    frame.index.name = "operation"
    frame["total"] = frame.sum(axis=1)
    return frame


def summary_table(result: Result) -> Table:
    """The run's identity and the scenario's figures, one row per item.

    A figure that is a mapping (final stock per coupon, latency quantiles, runner
    counts) gives one row per key, ``"latency p50_ms"``, instead of one cell that
    reads as a Python dict cut short.
    """
    counts = figures.phase_counts(result.history.ops)
    phases = ", ".join(f"{n} {phase}" for phase, n in counts.items() if phase != "all")
    rows: list[tuple[str, str]] = [
        ("scenario", result.scenario),
        ("layer", result.layer),
        ("strategy", result.strategy),
        ("seed", str(result.seed)),
        # Every op recorded, by phase: the figures below count the load's (``ops``).
        ("operations", f"{counts['all']} ({phases})" if phases else str(counts["all"])),
        ("duration_s", f"{result.duration_s:.3f}"),
    ]
    rows += [(f"param {k}", _short(v)) for k, v in sorted(result.params.items())]
    for key, value in result.summary.items():
        label = figures.SUMMARY_LABELS.get(key, key)
        if isinstance(value, dict) and value:
            rows += [(f"{label} {k}", _short(v)) for k, v in value.items()]
        else:
            rows.append((label, _short(value)))
    # set_index gives a plain DataFrame back: wrap again so the notebook shows a Table.
    return Table(pd.DataFrame(rows, columns=["item", "value"]).set_index("item"))


def verdict_table(result: Result) -> Table:
    """Every check with its verdict, detail and figures, so one look shows all that failed."""
    table = Table(
        [
            {
                "check": v.name,
                "verdict": v.label,
                "detail": v.detail,
                "figures": ", ".join(
                    f"{k}={_figure_text(k, x, result.history)}" for k, x in v.figures.items()
                ),
            }
            for v in result.verdicts
        ],
        columns=["check", "verdict", "detail", "figures"],
    )
    table.attrs["hide_index"] = True
    return table


def _figure_text(key: str, value: Any, history: History) -> str:
    # An op id below 0 is a setup op: say so (a witness naming "op -1" read as a bug).
    if key.endswith(("op_id", "op_ids")):
        return _short(figures.op_ids_text(value, history.ops), limit=400)
    return _short(value)


def _short(value: Any, limit: int = 120) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- charts ------------------------------------------------------------------------------


def outcome_chart(source: Source) -> Figure:
    """Stacked bars: for each operation kind, how many ops ended in each result kind."""
    table = outcome_table(source).drop(columns="total")
    fig, (ax,) = _figure(height=max(2.2, 0.9 + 0.7 * len(table.index)))
    labels = [str(k) for k in table.index]
    y = np.arange(len(labels))
    left = np.zeros(len(labels))
    for result_kind in table.columns:
        widths = table[result_kind].to_numpy(dtype=float)
        bars = ax.barh(
            y, widths, left=left, color=colour_of(result_kind), label=result_kind, height=0.6
        )
        # Label a segment with its count when it is wide enough to hold it.
        total = float(table.to_numpy().sum(axis=1).max() or 1)
        ax.bar_label(
            bars,
            labels=[str(int(w)) if w / total > 0.04 else "" for w in widths],
            label_type="center",
            fontsize=8,
            color="white",
        )
        left += widths
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlabel("operations")
    if len(table.columns):
        ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8, title="result")
    ax.set_title(_title(source, "outcomes"), fontsize=10)
    return fig


def latency_ecdf(
    source: Source, kind: str | None = None, by: str = "result", *, setup: bool = False
) -> Figure:
    """Empirical CDF of the exact latencies, one curve per group, p50/p90/p99 marked.

    ``by="result"`` draws one curve per result kind (in its colour); ``by="phase"`` one
    per phase label (e.g. the sizes of a scale run). ``kind`` restricts the chart to one
    operation kind (``"claim"``, ...). The ops are the load ops that started
    (``figures.load_ops``), the ones the summary's latency counts, and the quantiles
    are taken the same way (``figures.quantile``); ``setup=True`` adds the setup ops.
    """
    if by not in ("result", "phase"):
        raise ValueError(f"by must be 'result' or 'phase', not {by!r}")
    history = _history(source)
    counted = figures.started(history.ops if setup else figures.load_ops(history.ops))
    ids = {o.op_id for o in counted}
    frame = history.to_frame()
    frame = frame[frame["op_id"].isin(ids)]
    left_out = len(history) - len(frame)
    if kind is not None:
        frame = frame[frame["kind"] == kind]
    fig, (ax,) = _figure()
    if by == "result":
        groups = _ordered_results(set(frame["result"]))
        colours = {g: colour_of(g) for g in groups}
    else:
        frame = frame.assign(phase=frame["phase"].fillna("(none)").astype(str))
        groups = sorted(set(frame["phase"]), key=_natural)
        colours = {g: f"C{i % 10}" for i, g in enumerate(groups)}
    for group in groups:
        lat = np.sort(frame.loc[frame[by] == group, "latency_ms"].to_numpy(float))
        n = len(lat)
        prob = np.arange(1, n + 1) / n
        qs = {q: _q(lat, q) for q in QUANTILES}
        label = f"{group} (n={n}; " + ", ".join(
            f"p{round(q * 100)} {figures.ms(round(v, 3))}" for q, v in qs.items()
        )
        ax.step(lat, prob, where="post", color=colours[group], label=label + ")")
        for q, v in qs.items():
            ax.plot([v], [q], marker=_QUANTILE_MARKERS[q], color=colours[group], ls="")
    for q in QUANTILES:
        ax.axhline(q, color="#cccccc", lw=0.8, zorder=0)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("fraction of operations ≤ latency")
    if len(frame) and frame["latency_ms"].max() > 20 * max(frame["latency_ms"].min(), 1e-3):
        ax.set_xscale("log")
    if len(frame):
        ax.legend(fontsize=8, loc="lower right")
    what = f"latency by {'outcome' if by == 'result' else 'phase'}" + (f" ({kind})" if kind else "")
    if left_out and not setup:
        what += f", load ops (setup and not started: {left_out} left out)"
    ax.set_title(_title(source, what), fontsize=10)
    return fig


def _q(sorted_values: Any, q: float) -> float:
    value = figures.quantile([float(v) for v in sorted_values], q)
    return float("nan") if value is None else value


def _natural(label: str) -> tuple[str, int]:
    # "size-100" < "size-500" < "size-1000": the number sorts as a number.
    head = label.rstrip("0123456789")
    tail = label[len(head) :]
    return (head, int(tail) if tail else -1)


def _ms(value: float) -> str:
    return f"{value:.3g} ms" if value < 100 else f"{value:.0f} ms"


def rolling_stats(source: Source, window_s: float | None = None) -> pd.DataFrame:
    """At each completion: latency quantiles and throughput over the window ending there.

    ``window_s`` defaults to a twentieth of the history's span (at least 1 ms).
    """
    frame = _history(source).to_frame().sort_values("t_complete_s")
    t = frame["t_complete_s"].to_numpy(float)
    lat = frame["latency_ms"].to_numpy(float)
    if window_s is None:
        span = float(t[-1] - frame["t_invoke_s"].min()) if len(t) else 0.0
        window_s = max(span / 20, 1e-3)
    starts = np.searchsorted(t, t - window_s, side="right")
    rows = []
    for i in range(len(t)):
        window = lat[starts[i] : i + 1]
        row = {"t_s": t[i], "ops_per_s": len(window) / window_s, "n": len(window)}
        for q in QUANTILES:
            row[f"p{round(q * 100)}_ms"] = _q(np.sort(window), q)
        rows.append(row)
    columns = ["t_s", "ops_per_s", "n", *(f"p{round(q * 100)}_ms" for q in QUANTILES)]
    out = pd.DataFrame(rows, columns=columns)
    out.attrs["window_s"] = window_s
    return out


def latency_over_time(source: Source, window_s: float | None = None) -> Figure:
    """Two panels along time: rolling p50/p90/p99 latency, and rolling throughput."""
    stats = rolling_stats(source, window_s)
    window = float(stats.attrs["window_s"])
    fig, (top, bottom) = _figure(height=5.0, rows=2)
    bottom.sharex(top)
    for q, style in zip(QUANTILES, ("-", "--", ":"), strict=True):
        column = f"p{round(q * 100)}_ms"
        top.plot(
            stats["t_s"],
            stats[column],
            ls=style,
            drawstyle="steps-post",
            color="#333333",
            label=column[:-3],
        )
    top.set_ylabel("latency (ms)")
    if len(stats):
        top.legend(fontsize=8, loc="upper right")
    bottom.plot(
        stats["t_s"],
        stats["ops_per_s"],
        drawstyle="steps-post",
        color="#1f77b4",
        label="completed ops/s",
    )
    bottom.set_ylabel("ops/s")
    bottom.set_xlabel("time since start (s)")
    top.set_title(
        _title(source, f"latency and throughput, {_ms(window * 1e3)} window"), fontsize=10
    )
    return fig


def timeline(
    source: Source,
    fault_phase: str | None = None,
    highlight: Collection[int] | None = None,
) -> Figure:
    """One horizontal segment per operation, invoke to complete, one row per worker.

    Segments are coloured by result kind. With ``fault_phase``, the span from the first
    invoke to the last completion of the ops labelled with that phase is shaded. With
    ``highlight`` (op ids, e.g. a failed linearizability check's ``witness_op_ids``),
    those ops are drawn again on top, thick and outlined, so the failing core stands out.
    """
    frame = _history(source).to_frame()
    workers = sorted(int(w) for w in set(frame["worker"]))
    row_of = {w: i for i, w in enumerate(workers)}
    fig, (ax,) = _figure(height=min(9.0, max(2.5, 1.2 + 0.06 * len(workers))))
    segments = [
        ((float(a), row_of[int(w)]), (float(b), row_of[int(w)]))
        for a, b, w in zip(frame["t_invoke_s"], frame["t_complete_s"], frame["worker"], strict=True)
    ]
    colours = [colour_of(str(r)) for r in frame["result"]]
    width = 2.5 if len(workers) < 60 else 1.2
    ax.add_collection(LineCollection(segments, colors=colours, linewidths=width))
    # A zero-latency op would be invisible as a line: a tick marks every completion.
    ax.scatter(frame["t_complete_s"], [row_of[int(w)] for w in frame["worker"]], s=4, c=colours)
    if highlight:
        wanted = {int(i) for i in highlight}
        marked = frame[frame["op_id"].isin(wanted)]
        if len(marked):
            ax.add_collection(
                LineCollection(
                    [
                        ((float(a), row_of[int(w)]), (float(b), row_of[int(w)]))
                        for a, b, w in zip(
                            marked["t_invoke_s"],
                            marked["t_complete_s"],
                            marked["worker"],
                            strict=True,
                        )
                    ],
                    colors="black",
                    linewidths=width * 3,
                    zorder=3,
                    label=f"witness ({len(marked)} ops)",
                )
            )
            ax.scatter(
                marked["t_complete_s"],
                [row_of[int(w)] for w in marked["worker"]],
                s=40,
                marker="D",
                facecolors="none",
                edgecolors="black",
                zorder=4,
            )
    if fault_phase is not None:
        phase = frame[frame["phase"] == fault_phase]
        if len(phase):
            ax.axvspan(
                float(phase["t_invoke_s"].min()),
                float(phase["t_complete_s"].max()),
                color="#d62728",
                alpha=0.12,
                label=f"phase: {fault_phase}",
                zorder=0,
            )
    ax.autoscale_view()
    ax.set_ylim(-1, max(len(workers), 1))
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("worker")
    if len(workers) <= 20:
        # Worker -1 is the lab itself, creating the setup coupons (op ids below 0).
        ax.set_yticks(range(len(workers)), ["setup" if w < 0 else str(w) for w in workers])
    handles: list[Any] = [
        Patch(color=colour_of(r), label=r) for r in _ordered_results(set(frame["result"]))
    ]
    handles += [h for h in ax.get_legend_handles_labels()[0] if h not in handles]
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.set_title(_title(source, "timeline"), fontsize=10)
    return fig


def to_data_uri(fig: Figure, dpi: int = 80) -> str:
    """The figure as a ``data:image/png;base64,...`` URI, for a self-contained HTML page."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")
