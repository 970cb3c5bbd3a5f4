"""What a run shows: the summary table, the speed targets, CSV files and charts."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

from experiments.bench._harness import BenchRun


def summarize(frame: pd.DataFrame) -> pd.DataFrame:
    """One row per strategy, workload, workers and layer: median claims/s over rounds,
    latency quantiles (median over rounds), the ratio to pgbench within each round
    (median, min and max over rounds), the median ratios to the bare psycopg client and
    to the service layer, and the HTTP layer's server CPU per request (NaN where a
    layer did not run)."""
    import pandas as pd

    keys = ["strategy", "workload", "workers"]
    merged = frame
    for base in ("pgbench", "psycopg", "service"):
        rows = frame[frame["layer"] == base][[*keys, "round", "claims_per_s"]]
        merged = merged.merge(
            rows.rename(columns={"claims_per_s": f"{base}_per_s"}), on=[*keys, "round"], how="left"
        )
    merged["ratio"] = merged["claims_per_s"] / merged["pgbench_per_s"]
    merged["vs_psycopg"] = merged["claims_per_s"] / merged["psycopg_per_s"]
    merged["vs_service"] = merged["claims_per_s"] / merged["service_per_s"]
    if "server_cpu_us" not in merged:  # cells recorded before it was measured
        merged["server_cpu_us"] = float("nan")
    grouped = merged.groupby([*keys, "layer"], sort=False)
    table = pd.DataFrame(
        {
            "claims_per_s": grouped["claims_per_s"].median(),
            "p50_ms": grouped["p50_ms"].median(),
            "p99_ms": grouped["p99_ms"].median(),
            "ratio": grouped["ratio"].median(),
            "ratio_min": grouped["ratio"].min(),
            "ratio_max": grouped["ratio"].max(),
            "vs_psycopg": grouped["vs_psycopg"].median(),
            "vs_service": grouped["vs_service"].median(),
            "server_cpu_us": grouped["server_cpu_us"].median(),
            "errors": grouped["errors"].sum(),
            "conserved": grouped["conserved"].all(),
        }
    ).reset_index()
    return table.sort_values(keys, kind="stable").reset_index(drop=True)


@dataclass(frozen=True)
class Target:
    """A speed target and what was measured against it (``None`` when not measured)."""

    name: str
    goal: float
    measured: float | None
    #: What else bears on it, e.g. how far the bare psycopg client got.
    context: str = ""
    #: A cost (CPU per request), met at or under the goal; a speed is met at or over it.
    lower_is_better: bool = False

    @property
    def met(self) -> bool | None:
        if self.measured is None:
            return None
        return self.measured <= self.goal if self.lower_is_better else self.measured >= self.goal

    def line(self) -> str:
        if self.measured is None:
            return f"{'n/a':>5}  {self.name}: not measured (goal {self.goal:.2f})"
        verdict = "MET" if self.met else "MISSED"
        context = f"; {self.context}" if self.context else ""
        if self.lower_is_better:
            return (
                f"{verdict:>6}  {self.name}: {self.measured:.0f} (goal <= {self.goal:.0f}{context})"
            )
        return f"{verdict:>6}  {self.name}: {self.measured:.3f} (goal >= {self.goal:.2f}{context})"


def targets(summary: pd.DataFrame, workers: int = 16) -> list[Target]:
    """The targets of issues 6 and 12, from ``summarize``'s table."""

    def cell(strategy: str, workload: str, layer: str, column: str) -> float | None:
        rows = summary[
            (summary["strategy"] == strategy)
            & (summary["workload"] == workload)
            & (summary["workers"] == workers)
            & (summary["layer"] == layer)
        ]
        value = float(rows[column].iloc[0]) if len(rows) else float("nan")
        return None if value != value else value  # NaN: not measured

    def ceiling(strategy: str, workload: str) -> str:
        bare = cell(strategy, workload, "psycopg", "ratio")
        return "" if bare is None else f"bare psycopg {bare:.2f}"

    found: list[Target] = []
    strategies = list(dict.fromkeys(summary["strategy"]))
    many = sorted(w for w in set(summary["workload"]) if w != "hot")
    for s in strategies:
        found.append(
            Target(
                f"{s} service/pgbench, hot, {workers} workers",
                0.85,
                cell(s, "hot", "service", "ratio"),
                ceiling(s, "hot"),
            )
        )
        for w in many:
            found.append(
                Target(
                    f"{s} service/pgbench, {w}, {workers} workers",
                    0.60,
                    cell(s, w, "service", "ratio"),
                    ceiling(s, w),
                )
            )
        found.append(
            Target(
                f"{s} http/pgbench, hot, {workers} workers", 0.40, cell(s, "hot", "http", "ratio")
            )
        )
    correct = summary.groupby("strategy")["conserved"].all()
    for layer in ("pgbench", "service", "http"):
        base = cell("row_lock", "hot", layer, "claims_per_s")
        speeds = {
            s: v
            for s in strategies
            if s != "row_lock"
            and bool(correct.get(s, False))
            and (v := cell(s, "hot", layer, "claims_per_s")) is not None
        }
        if base and speeds:
            best = max(speeds, key=lambda s: speeds[s])
            found.append(
                Target(
                    f"fastest correct ({best}) / row_lock, hot, {layer}", 1.5, speeds[best] / base
                )
            )
    return found + _http_targets(summary, cell, workers)


Cell = Callable[[str, str, str, str], "float | None"]

#: The strategies that keep the original's design: the coupon row locked, then check,
#: insert, decrement (``row_lock`` itself, and its pipelined variant).
ROW_LOCK_DESIGN = ("row_lock", "row_lock_pipelined")
#: Issue 12's goal for the server CPU per claim request (atomic, many coupons), in us.
SERVER_CPU_GOAL_US = 120.0


def _http_targets(summary: pd.DataFrame, cell: Cell, workers: int) -> list[Target]:
    """Issue 12: the HTTP layer against the service, its server CPU, and the row-lock
    design through HTTP against pgbench's own row_lock transaction."""
    found: list[Target] = []
    many = sorted(w for w in set(summary["workload"]) if w != "hot")
    for workload, goal in [*((w, 0.60) for w in many), ("hot", 0.70)]:
        found.append(
            Target(
                f"atomic http/service, {workload}, {workers} workers",
                goal,
                cell("atomic", workload, "http", "vs_service"),
            )
        )
    for workload in [*many, "hot"]:
        cpu = cell("atomic", workload, "http", "server_cpu_us")
        found.append(
            Target(
                f"atomic http server CPU per claim request (us), {workload}, {workers} workers",
                SERVER_CPU_GOAL_US,
                cpu,
                lower_is_better=True,
            )
        )
    # Against pgbench's row_lock transaction itself (the pipelined variant's own pgbench
    # cell runs the same script, so it would only add that cell's noise): medians of
    # claims/s over the run's rounds.
    reference = cell("row_lock", "hot", "pgbench", "claims_per_s")
    speeds = {
        s: v / reference
        for s in ROW_LOCK_DESIGN
        if reference and (v := cell(s, "hot", "http", "claims_per_s")) is not None
    }
    if speeds:
        best = max(speeds, key=lambda s: speeds[s])
        others = ", ".join(f"{s} {v:.2f}" for s, v in speeds.items() if s != best)
        found.append(
            Target(
                f"fastest row-lock design ({best}) http / pgbench row_lock, hot, {workers} workers",
                0.60,
                speeds[best],
                others,
            )
        )
    return found


def format_table(summary: pd.DataFrame) -> str:
    """The summary as a fixed-width text table (what ``coupon-chaos bench`` prints)."""
    head = (
        f"{'strategy':<19}{'workload':<12}{'workers':>7}  {'layer':<8}{'claims/s':>9}"
        f"{'p50 ms':>8}{'p99 ms':>8}{'vs pgbench':>11}{'(min-max)':>12}{'vs psycopg':>11}"
        f"{'errors':>7}  ok{'us/req':>8}"
    )
    lines = [head, "-" * len(head)]
    vs_psycopg: list[float] = summary["vs_psycopg"].astype(float).tolist()
    cpu_us: list[float] = summary["server_cpu_us"].astype(float).tolist()
    for r, vs_bare, cpu in zip(summary.itertuples(index=False), vs_psycopg, cpu_us, strict=True):
        spread = "" if r.layer == "pgbench" else f"{r.ratio_min:.2f}-{r.ratio_max:.2f}"
        ratio = "" if r.layer == "pgbench" else f"{r.ratio:.2f}"
        bare = "" if r.layer in ("pgbench", "psycopg") or math.isnan(vs_bare) else f"{vs_bare:.2f}"
        lines.append(
            f"{r.strategy:<19}{r.workload:<12}{r.workers:>7}  {r.layer:<8}{r.claims_per_s:>9.0f}"
            f"{r.p50_ms:>8.2f}{r.p99_ms:>8.2f}{ratio:>11}{spread:>12}{bare:>11}{r.errors:>7}"
            f"  {'yes' if r.conserved else 'NO ':<3}{'' if math.isnan(cpu) else f'{cpu:.0f}':>8}"
        )
    return "\n".join(lines)


def throughput_chart(summary: pd.DataFrame, workload: str) -> Figure:
    """Claims/s by workers (left) and each layer's ratio to pgbench (right), one workload."""
    import matplotlib.pyplot as plt

    part = summary[summary["workload"] == workload]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    # One colour per strategy, one line style per layer.
    colours = {s: f"C{i}" for i, s in enumerate(dict.fromkeys(part["strategy"]))}
    for (strategy, layer), rows in part.groupby(["strategy", "layer"], sort=False):
        style = {"pgbench": "-", "psycopg": "-.", "service": "--", "http": ":"}.get(str(layer), "-")
        kw = {"color": colours[strategy], "marker": "o", "label": f"{strategy} {layer}"}
        axes[0].plot(rows["workers"], rows["claims_per_s"], style, **kw)
        if layer != "pgbench":
            axes[1].plot(rows["workers"], rows["ratio"], style, **kw)
    axes[0].set(
        xscale="log", xlabel="workers", ylabel="claims/s", title=f"claims per second, {workload}"
    )
    axes[1].set(
        xscale="log",
        xlabel="workers",
        ylabel="layer / pgbench",
        title=f"ratio to pgbench (same round), {workload}",
    )
    axes[1].axhline(1.0, color="grey", linewidth=0.8)
    axes[0].legend(fontsize=7, ncol=2)
    axes[1].legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def write_outputs(run: BenchRun, out_dir: Path) -> list[Path]:
    """Write cells.csv, summary.csv, targets.txt and charts (PNG) into ``out_dir``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    frame = run.frame()
    summary = summarize(frame)
    written = [out_dir / "cells.csv", out_dir / "summary.csv", out_dir / "summary.txt"]
    frame.to_csv(written[0], index=False)
    summary.to_csv(written[1], index=False)
    text = [f"seed {run.seed}; {run.config}", format_table(summary), ""]
    text += [t.line() for t in targets(summary)]
    written[2].write_text("\n".join(text) + "\n")
    for workload in dict.fromkeys(summary["workload"]):
        fig = throughput_chart(summary, str(workload))
        path = out_dir / f"throughput-{workload}.png"
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written
