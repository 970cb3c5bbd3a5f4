"""Charts, tables and a written conclusion from a sweep's tidy tables (``experiments.sweep``).

Every chart is a ``report.Chart`` (Agg canvas, no pyplot) with one panel per scenario,
and one box (with every seed's point over it) per strategy and layer: the spread of a
figure across seeds, where the single-run notebooks show one value. Outcome counts
are drawn as distinct values, one dot each, sized by how many seeds gave it: a
correct strategy draws exactly one dot per outcome (``not_degenerate`` names the
cells that do not). Every function takes a ``Sweep`` and draws only what it holds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg

from experiments import figures
from experiments.report import Chart, Table, colour_of
from experiments.sweep import REAL_STRATEGIES, Sweep

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = [
    "STRATEGY_COLOURS",
    "cell_table",
    "conclusion",
    "detection_chart",
    "detection_rates",
    "latency_bands",
    "latency_ecdf",
    "lock_wait_chart",
    "not_degenerate",
    "outcome_columns",
    "outcome_distribution",
    "outcome_values",
    "pooled_p99",
    "retries_chart",
    "runs_time",
    "start_chart",
    "throughput_chart",
]

#: One colour per real strategy in every chart; mutants get grey.
STRATEGY_COLOURS: dict[str, str] = {
    "row_lock": "#1f77b4",
    "atomic": "#2ca02c",
    "serializable": "#d62728",
    "advisory": "#9467bd",
}
_MUTANT_COLOUR = "#7f7f7f"
_CELL = ["scenario", "strategy", "layer"]


def _colour(strategy: str) -> str:
    return STRATEGY_COLOURS.get(strategy, _MUTANT_COLOUR)


def _done(sweep: Sweep) -> pd.DataFrame:
    """Runs that finished (passed or failed): the ones with figures."""
    runs = sweep.runs
    if runs.empty:
        return runs
    return runs[runs["status"].isin(["pass", "FAIL"])]


def _cells(frame: pd.DataFrame) -> list[tuple[str, str]]:
    """(strategy, layer) pairs in a stable order: real strategies first, then mutants."""
    order = {s: i for i, s in enumerate(REAL_STRATEGIES)}
    pairs = {(str(s), str(la)) for s, la in zip(frame["strategy"], frame["layer"], strict=True)}
    return sorted(pairs, key=lambda p: (order.get(p[0], len(order)), p[0], p[1]))


def _panels(
    scenarios: Sequence[str], width: float = 10.0, height: float = 3.4
) -> tuple[Chart, list[Axes]]:
    fig = Chart(figsize=(width, height * max(1, len(scenarios))), layout="constrained")
    FigureCanvasAgg(fig)
    axes = [
        fig.add_subplot(max(1, len(scenarios)), 1, i + 1) for i in range(max(1, len(scenarios)))
    ]
    return fig, axes


def _scenarios(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame["scenario"])) if not frame.empty else []


def _empty(title: str, why: str) -> Chart:
    fig, (ax,) = _panels([""], height=1.6)
    ax.text(0.5, 0.5, why, ha="center", va="center", fontsize=11)
    ax.set_axis_off()
    fig.suptitle(title)
    return fig


def _boxes(
    frame: pd.DataFrame, column: str, title: str, ylabel: str, *, log: bool = False
) -> Chart:
    """One panel per scenario, one box per (strategy, layer) of ``column``, seeds as dots."""
    data = frame.dropna(subset=[column]) if column in frame else frame.iloc[0:0]
    if data.empty:
        return _empty(title, f"no run of this sweep measured {column}")
    names = _scenarios(data)
    fig, axes = _panels(names)
    for ax, name in zip(axes, names, strict=True):
        _box_panel(ax, data[data["scenario"] == name], column, ylabel, log=log)
        ax.set_title(
            f"{name} ({data[data['scenario'] == name]['seed'].nunique()} seeds)", fontsize=10
        )
    fig.suptitle(title)
    return fig


def _box_panel(ax: Axes, sub: pd.DataFrame, column: str, ylabel: str, *, log: bool = False) -> None:
    rng = np.random.default_rng(0)  # the jitter only spreads dots; fixed so pages are stable
    cells = _cells(sub)
    values = [
        sub[(sub["strategy"] == s) & (sub["layer"] == la)][column].astype(float).to_numpy()
        for s, la in cells
    ]
    box = ax.boxplot(values, patch_artist=True, widths=0.6, showfliers=False)
    for patch, (s, _) in zip(box["boxes"], cells, strict=True):
        patch.set_facecolor(_colour(s))
        patch.set_alpha(0.35)
    for i, (v, (s, _)) in enumerate(zip(values, cells, strict=True)):
        x = i + 1 + rng.uniform(-0.15, 0.15, len(v))
        ax.scatter(x, v, s=12, color=_colour(s), zorder=3)
    ax.set_xticks(range(1, len(cells) + 1), [f"{s}\n{la}" for s, la in cells], fontsize=7)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_yscale("log")
    ax.grid(axis="y", alpha=0.3)


# -- outcomes ------------------------------------------------------------------------------


def outcome_columns(frame: pd.DataFrame) -> list[str]:
    """The outcome-count columns of ``runs`` (``claim_ok``, ``claim_no_stock``, ...)."""
    return [c for c in frame.columns if c.split("_", 1)[0] in ("claim", "create", "get")]


def _outcome_rows(sweep: Sweep) -> list[dict[str, Any]]:
    """Per cell and outcome column seen: the distinct counts the seeds gave."""
    done = _done(sweep)
    rows: list[dict[str, Any]] = []
    for key, sub in done.groupby(_CELL, sort=False):
        for col in outcome_columns(done):
            counts = sub[col].fillna(0).astype(int)
            if not counts.any():
                continue  # an outcome no seed of this cell saw
            values = sorted(int(v) for v in counts.unique())
            cell = dict(zip(_CELL, (str(k) for k in key), strict=True))
            rows.append({**cell, "outcome": col, "seeds": len(counts), "values": values})
    return rows


def outcome_values(sweep: Sweep) -> Table:
    """One row per cell, one column per outcome: the distinct counts over the seeds
    (one number when degenerate), and how many seeds finished."""
    rows = _outcome_rows(sweep)
    if not rows:
        return Table(columns=[*_CELL, "seeds"])
    wide: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        key = (r["scenario"], r["strategy"], r["layer"])
        row = wide.setdefault(key, {**dict(zip(_CELL, key, strict=True)), "seeds": r["seeds"]})
        row[r["outcome"]] = ", ".join(map(str, r["values"]))
    table = Table(pd.DataFrame(list(wide.values())).fillna("-"))
    table.attrs["hide_index"] = True
    return table


def not_degenerate(sweep: Sweep, *, real_only: bool = True) -> list[str]:
    """The (cell, outcome) whose count varied across seeds; [] when every one is degenerate."""
    return [
        f"{r['scenario']}/{r['strategy']}/{r['layer']} {r['outcome']}: {r['values']}"
        for r in _outcome_rows(sweep)
        if len(r["values"]) != 1 and (not real_only or r["strategy"] in REAL_STRATEGIES)
    ]


def outcome_distribution(sweep: Sweep) -> Chart:
    """Claim outcome counts across seeds: one dot per distinct count, sized by its seeds."""
    done = _done(sweep)
    columns = [c for c in outcome_columns(done) if c.startswith("claim_")]
    title = "Claim outcomes across seeds (one dot per distinct count; correct = one dot each)"
    if done.empty or not columns:
        return _empty(title, "no finished run with claims")
    names = _scenarios(done)
    fig, axes = _panels(names)
    for ax, name in zip(axes, names, strict=True):
        sub = done[done["scenario"] == name]
        cells = _cells(sub)
        width = 0.8 / len(columns)
        for j, col in enumerate(columns):
            result = col.removeprefix("claim_")
            for i, (s, la) in enumerate(cells):
                counts = sub[(sub["strategy"] == s) & (sub["layer"] == la)][col].fillna(0)
                freq = counts.astype(int).value_counts()
                x = i + 1 - 0.4 + width * (j + 0.5)
                ax.scatter(
                    [x] * len(freq),
                    freq.index,
                    s=20 + 180 * freq.to_numpy() / max(1, len(counts)),
                    color=colour_of(result),
                    edgecolor="black",
                    linewidth=0.4,
                    zorder=3,
                    label=result if i == 0 else None,
                )
        ax.set_xticks(range(1, len(cells) + 1), [f"{s}\n{la}" for s, la in cells], fontsize=7)
        ax.set_ylabel("claims per run")
        ax.set_title(f"{name} ({sub['seed'].nunique()} seeds)", fontsize=10)
        ax.legend(fontsize=8, loc="best")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return fig


# -- latency, throughput, start ------------------------------------------------------------


def latency_ecdf(sweep: Sweep, kind: str = "claim") -> Chart:
    """ECDF of ``kind`` latencies, every seed's load pooled, one line per strategy and layer."""
    ops = sweep.ops
    title = f"{kind} latency ECDF (all seeds pooled)"
    if ops.empty:
        return _empty(title, "no operations recorded")
    ops = ops[(ops["kind"] == kind) & (ops["phase"] == "load")]
    if ops.empty:
        return _empty(title, f"no {kind} in the load phase")
    names = _scenarios(ops)
    fig, axes = _panels(names)
    for ax, name in zip(axes, names, strict=True):
        sub = ops[ops["scenario"] == name]
        for s, la in _cells(sub):
            lat = np.sort(sub[(sub["strategy"] == s) & (sub["layer"] == la)]["latency_ms"])
            y = np.arange(1, len(lat) + 1) / len(lat)
            ax.step(
                lat,
                y,
                where="post",
                color=_colour(s),
                linestyle="-" if la == "service" else "--",
                label=f"{s} {la} (pooled p99 {pooled_p99(sweep, kind, name, s, la):.1f} ms)",
            )
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log)")
        ax.set_ylabel("fraction of claims")
        ax.set_title(name, fontsize=10)
        ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
        ax.grid(alpha=0.3)
    fig.suptitle(title + ": solid service, dashed http")
    return fig


def pooled_p99(sweep: Sweep, kind: str, scenario: str, strategy: str, layer: str) -> float:
    """The p99 of every seed's ``kind`` latencies pooled (the ECDF's), ``figures.quantile``."""
    ops = sweep.ops
    sub = ops[
        (ops["kind"] == kind)
        & (ops["phase"] == "load")
        & (ops["scenario"] == scenario)
        & (ops["strategy"] == strategy)
        & (ops["layer"] == layer)
    ]
    value = figures.quantile(sorted(float(v) for v in sub["latency_ms"]), 0.99)
    return float("nan") if value is None else value


def runs_time(meta: dict[str, Any]) -> str:
    """How long the sweep's runs took (``sweep.json``'s ``elapsed_s``): the page's header and
    the console say this one figure; the report's own time is said apart."""
    return f"runs took {float(meta.get('elapsed_s', 0.0)):.1f} s"


def latency_bands(sweep: Sweep) -> Chart:
    """Each run's p50 and p99 claim latency: the median across seeds, bands min to max."""
    done = _done(sweep).dropna(subset=["p50_ms", "p99_ms"])
    title = "p50 and p99 claim latency per run: median across seeds, band min..max"
    if done.empty:
        return _empty(title, "no finished run measured latency")
    names = _scenarios(done)
    fig, axes = _panels(names)
    for ax, name in zip(axes, names, strict=True):
        sub = done[done["scenario"] == name]
        cells = _cells(sub)
        for q, marker, shift in (("p50_ms", "o", -0.12), ("p99_ms", "^", 0.12)):
            for i, (s, la) in enumerate(cells):
                v = sub[(sub["strategy"] == s) & (sub["layer"] == la)][q].astype(float)
                med, lo, hi = v.median(), v.min(), v.max()
                ax.errorbar(
                    i + 1 + shift,
                    med,
                    yerr=[[med - lo], [hi - med]],
                    fmt=marker,
                    color=_colour(s),
                    capsize=4,
                    label=q.removesuffix("_ms") if i == 0 else None,
                )
        ax.set_xticks(range(1, len(cells) + 1), [f"{s}\n{la}" for s, la in cells], fontsize=7)
        ax.set_yscale("log")
        ax.set_ylabel("ms (log)")
        ax.set_title(f"{name} ({sub['seed'].nunique()} seeds)", fontsize=10)
        ax.legend(fontsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title)
    return fig


def throughput_chart(sweep: Sweep) -> Chart:
    return _boxes(_done(sweep), "throughput_ops_s", "Throughput per run", "operations/s")


def start_chart(sweep: Sweep) -> Chart:
    """Start spread (how together the barrier released the workers) and peak overlap."""
    done = _done(sweep)
    title = "Start spread (max - min of the workers' first invoke) and peak overlap per run"
    if done.empty:
        return _empty(title, "no finished run")
    names = _scenarios(done)
    fig = Chart(figsize=(11, 3.4 * len(names)), layout="constrained")
    FigureCanvasAgg(fig)
    for i, name in enumerate(names):
        sub = done[done["scenario"] == name]
        left = fig.add_subplot(len(names), 2, 2 * i + 1)
        right = fig.add_subplot(len(names), 2, 2 * i + 2)
        _box_panel(left, sub.dropna(subset=["start_spread_ms"]), "start_spread_ms", "ms", log=True)
        _box_panel(right, sub, "peak_in_flight", "operations in flight")
        left.set_title(f"{name}: start spread", fontsize=10)
        right.set_title(f"{name}: peak overlap", fontsize=10)
    fig.suptitle(title)
    return fig


def retries_chart(sweep: Sweep) -> Chart:
    """Serialization failures retried per claim, per run of the serializable strategy."""
    done = _done(sweep)
    done = done[done["strategy"] == "serializable"] if not done.empty else done
    title = "serializable: retries per claim"
    if done.empty:
        return _empty(
            title,
            f"omitted: no finished `serializable` run in this sweep ({_ran(sweep)});"
            "\nonly serializable retries (add --strategy serializable)",
        )
    return _boxes(done, "retries_per_claim", title, "retries / claim")


def _ran(sweep: Sweep) -> str:
    runs = sweep.runs
    if runs.empty or "strategy" not in runs:
        return "no run"
    return "strategies " + ", ".join(dict.fromkeys(str(s) for s in runs["strategy"]))


def lock_wait_chart(sweep: Sweep) -> Chart:
    """Backend time waiting for locks per claim (pg_stat_activity sampled every 10 ms)."""
    return _boxes(
        _done(sweep),
        "lock_wait_per_claim_ms",
        "Lock wait per claim (sampled pg_stat_activity, backend-ms / claim)",
        "ms / claim",
    )


# -- mutants -------------------------------------------------------------------------------


def detection_rates(sweep: Sweep) -> Table:
    """Per mutant, scenario and check: the share of its seeds in which the check failed.

    ``any check`` is the share of finished runs in which some check failed (the run
    caught the mutant); a crashed run counts in neither. A mutant a scenario cannot
    show (a one-user bug in a many-user stampede) reads 0 there, not a miss overall.
    """
    columns = ["mutant", "scenario", "check", "rate", "runs"]
    runs = sweep.runs
    mutants = runs[runs["kind"] == "mutant"] if not runs.empty else runs
    rows: list[dict[str, Any]] = []
    if not mutants.empty and not sweep.checks.empty:
        finished = mutants[mutants["status"].isin(["pass", "FAIL"])]
        for (name, scenario), sub in finished.groupby(["strategy", "scenario"], sort=False):
            rows.append(
                {
                    "mutant": str(name),
                    "scenario": str(scenario),
                    "check": "any check",
                    "rate": float((sub["status"] == "FAIL").mean()),
                    "runs": len(sub),
                }
            )
        keys = ["scenario", "strategy", "layer", "seed"]
        checks = sweep.checks.merge(mutants[keys], on=keys)
        grouped = checks.groupby(["strategy", "scenario", "check"], sort=False)
        for (mutant, scenario, check), by in grouped:
            rows.append(
                {
                    "mutant": str(mutant),
                    "scenario": str(scenario),
                    "check": str(check),
                    "rate": float((by["verdict"] != "pass").mean()),
                    "runs": len(by),
                }
            )
    table = Table(rows, columns=columns)
    table.attrs["hide_index"] = True
    if not rows:
        table.attrs["empty_reason"] = (
            f"Omitted: no mutant in this sweep ({_ran(sweep)}); add --strategy mutants."
        )
    return table


def detection_chart(sweep: Sweep) -> Chart:
    """Heat map: (mutant, scenario) by check, the share of seeds each check caught (0 to 1).

    Checks that caught nothing anywhere are left out (named in the title's count).
    """
    rates = detection_rates(sweep)
    title = "Detection rate per mutant, scenario and check, across seeds"
    if rates.empty:
        return _empty(
            title,
            f"omitted: no mutant in this sweep ({_ran(sweep)});"
            "\nadd --strategy mutants to measure detection",
        )
    rates = rates.assign(row=rates["mutant"] + " · " + rates["scenario"])
    grid = rates.pivot(index="row", columns="check", values="rate").fillna(0.0)
    grid = grid.reindex(index=list(dict.fromkeys(rates["row"])))
    caught = [c for c in grid.columns if c != "any check" and bool((grid[c] > 0).any())]
    silent = len(grid.columns) - 1 - len(caught)
    grid = grid[["any check", *caught]]
    title += f" ({silent} checks that never caught left out)" if silent else ""
    fig = Chart(
        figsize=(1.0 * len(grid.columns) + 5.0, 0.4 * len(grid) + 2.2), layout="constrained"
    )
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="Greens", vmin=0, vmax=1, aspect="auto")
    ax.set_xticks(range(len(grid.columns)), grid.columns, rotation=35, ha="right", fontsize=8)
    ax.set_yticks(range(len(grid.index)), grid.index, fontsize=8)
    values = grid.to_numpy(dtype=float)
    for i in range(len(grid.index)):
        for j in range(len(grid.columns)):
            v = float(values[i, j])
            ax.text(
                j,
                i,
                f"{v:.2f}",
                ha="center",
                va="center",
                fontsize=7,
                color="white" if v > 0.6 else "black",
            )
    fig.colorbar(image, ax=ax, label="share of runs caught")
    ax.set_title(title, fontsize=10)
    return fig


# -- tables and the conclusion -------------------------------------------------------------


def cell_table(sweep: Sweep) -> Table:
    """One row per (scenario, strategy, layer): runs by status and the median figures."""
    runs = sweep.runs
    rows = []
    for key, sub in runs.groupby(_CELL, sort=False):
        done = sub[sub["status"].isin(["pass", "FAIL"])]

        def med(col: str, frame: pd.DataFrame = done) -> float | None:
            if col not in frame or frame[col].dropna().empty:
                return None
            return float(frame[col].dropna().median())

        rows.append(
            {
                **dict(zip(_CELL, key, strict=True)),
                "runs": len(sub),
                "pass": int((sub["status"] == "pass").sum()),
                "FAIL": int((sub["status"] == "FAIL").sum()),
                "error": int((sub["status"] == "error").sum()),
                "skipped": int((sub["status"] == "skipped").sum()),
                "unknown": int((sub["status"] == "unknown").sum()),
                "no experiment": int((sub["status"] == "no_experiment").sum()),
                "ops/s": med("throughput_ops_s"),
                "p50 ms": med("p50_ms"),
                "p99 ms": med("p99_ms"),
                "spread ms": med("start_spread_ms"),
                "retries/claim": med("retries_per_claim"),
                "lock wait ms/claim": med("lock_wait_per_claim_ms"),
            }
        )
    # A figure a cell does not have (retries of a lock strategy) reads "-", not "nan".
    table = Table(pd.DataFrame(rows).astype(object).where(lambda f: f.notna(), "-"))
    table.attrs["hide_index"] = True
    return table


def _names(strategies: Sequence[str]) -> str:
    return ", ".join(f"`{s}`" for s in strategies)


def conclusion(sweep: Sweep) -> str:
    """A few sentences (Markdown) per scenario and layer, computed from the real strategies'
    figures: who passed, who was fastest and by how much, tails, lock waits, retries."""
    real = sweep.real
    done = real[real["status"].isin(["pass", "FAIL"])] if not real.empty else real
    if done.empty:
        return "No real strategy finished a run: nothing to conclude."
    lines = []
    for (name, layer), sub in done.groupby(["scenario", "layer"], sort=False):
        figures: dict[str, dict[str, float]] = {}
        for strategy, g in sub.groupby("strategy", sort=False):
            figures[str(strategy)] = {
                col: float(g[col].median())
                for col in ("throughput_ops_s", "p99_ms", "lock_wait_per_claim_ms")
                if col in g and g[col].notna().any()
            }
        correct = sorted(
            str(s) for s, g in sub.groupby("strategy") if bool((g["status"] == "pass").all())
        )
        wrong = sorted(set(figures) - set(correct))
        same = not not_degenerate(Sweep(sub, sweep.ops.iloc[0:0], sweep.checks.iloc[0:0]))
        verdict = (
            f"All {len(correct)} strategies passed every check on every seed"
            if not wrong
            else f"{_names(wrong)} FAILED a check on some seed; {_names(correct) or 'none'} passed"
        )
        parts = [
            f"**{name}, {layer} layer, {sub['seed'].nunique()} seeds.** {verdict}"
            + (
                "; each strategy's outcome counts were the same on every seed."
                if same
                else "; some outcome counts varied across seeds."
            )
        ]
        speed = {s: f["throughput_ops_s"] for s, f in figures.items() if "throughput_ops_s" in f}
        if len(speed) >= 2:
            fast = max(speed, key=lambda k: speed[k])
            slow = min(speed, key=lambda k: speed[k])
            parts.append(
                f"`{fast}` had the highest median throughput ({speed[fast]:.0f} ops/s), "
                f"{speed[fast] / speed[slow]:.1f}x `{slow}`'s ({speed[slow]:.0f} ops/s)."
            )
        tails = {s: f["p99_ms"] for s, f in figures.items() if "p99_ms" in f}
        if tails:
            low = min(tails, key=lambda k: tails[k])
            high = max(tails, key=lambda k: tails[k])
            pooled = {
                s: pooled_p99(sweep, "claim", str(name), s, str(layer))
                for s in (low, high)
                if not sweep.ops.empty
            }
            pooled_text = (
                "; pooled over every seed's claims (the ECDF's figure) "
                + ", ".join(f"`{s}` {v:.1f} ms" for s, v in pooled.items() if v == v)
                if any(v == v for v in pooled.values())
                else ""
            )
            parts.append(
                f"The median across seeds of each run's claim p99 was lowest for `{low}` "
                f"({tails[low]:.1f} ms) and highest for `{high}` ({tails[high]:.1f} ms)"
                f"{pooled_text}."
            )
        waits = {
            s: f["lock_wait_per_claim_ms"]
            for s, f in figures.items()
            if "lock_wait_per_claim_ms" in f
        }
        if waits:
            most = max(waits, key=lambda k: waits[k])
            none = sorted(s for s, v in waits.items() if v == 0)
            parts.append(
                f"Backends waited longest for locks under `{most}` ({waits[most]:.1f} ms per "
                "claim, median of sampled pg_stat_activity)"
                + (f"; the median sampled wait was 0 under {_names(none)}." if none else ".")
            )
        ser = sub[sub["strategy"] == "serializable"]["retries_per_claim"].dropna()
        if not ser.empty:
            parts.append(
                f"`serializable` retried {float(ser.median()):.2f} times per claim (median; "
                f"{float(ser.min()):.2f} to {float(ser.max()):.2f} across seeds)."
            )
        lines.append(" ".join(parts))
    return "\n\n".join(lines)
