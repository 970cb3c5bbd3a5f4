"""Charts and tables of an isolation Result: detection rate per anomaly per cell, a witness."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from experiments.result import Result

__all__ = ["detection_chart", "detection_table", "witness_table"]


def detection_table(result: Result) -> pd.DataFrame:
    """One row per cell: what it expects, and per anomaly class the share of seeds showing it."""
    import pandas as pd

    rates: dict[str, dict[str, float]] = result.summary["detection_rate"]
    expected: dict[str, str] = result.summary["expected"]
    frame = pd.DataFrame.from_dict(rates, orient="index").fillna(0.0)
    frame.insert(0, "expect", [expected[c] for c in frame.index])
    frame.index.name = "cell"
    return frame


def detection_chart(result: Result) -> Figure:
    """Horizontal bars: the detection rate of each anomaly class in each cell."""
    import matplotlib.pyplot as plt

    table = detection_table(result).drop(columns="expect")
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(table) + 1.5))
    if table.shape[1]:
        table.plot.barh(ax=ax)
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"share of {len(result.summary['seeds'])} seeds showing the anomaly")
    ax.invert_yaxis()
    ax.set_title("Anomalies detected per cell (workload/implementation/isolation)")
    fig.tight_layout()
    return fig


def witness_table(result: Result, cell: str) -> pd.DataFrame:
    """The witness cycle of ``cell``'s verdict: each edge, its kind, the ops it joins, why."""
    import pandas as pd

    w: dict[str, Any] | None = result.verdict(cell).figures.get("witness")
    if not w:
        return pd.DataFrame(columns=["from", "to", "kind", "from op", "why"])
    ops = dict(zip(w["cycle"][:-1], w["txns"], strict=True))
    return pd.DataFrame(
        [
            {
                "from": e["from"],
                "to": e["to"],
                "kind": e["kind"],
                "from op": ops[e["from"]],
                "why": e["why"],
            }
            for e in w["edges"]
        ]
    )
