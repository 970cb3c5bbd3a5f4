"""check_history: the Elle-style verdict over a history of list-append transactions."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, Literal

from experiments.elle._cycles import find_cycles
from experiments.elle._graph import PROCESS, REALTIME, TimeUp
from experiments.elle._history import Txn
from experiments.elle._infer import infer
from experiments.result import Verdict

__all__ = ["CHECK_NAME", "ELLE_TIME_LIMIT_S", "FORBIDDEN", "Model", "check_history"]

CHECK_NAME = "elle"
ELLE_TIME_LIMIT_S = 30.0

Model = Literal["read-committed", "snapshot-isolation", "serializable", "strict-serializable"]

# What every model forbids: the history cannot be explained by any execution.
_STRUCTURAL = frozenset(
    {
        "duplicate-appends",
        "duplicate-elements",
        "garbage-read",
        "incompatible-order",
        "internal",
    }
)
_PL2 = _STRUCTURAL | {"G0", "G1a", "G1b", "G1c"}
#: The anomaly classes each model forbids (Adya; Hermitage for PostgreSQL's levels:
#: READ COMMITTED ~ read-committed, REPEATABLE READ ~ snapshot-isolation, which still
#: allows G2-item, SERIALIZABLE ~ serializable). Realtime variants are forbidden only
#: by strict-serializable; process variants wherever process order was asked for.
FORBIDDEN: dict[str, frozenset[str]] = {
    "read-committed": _PL2,
    "snapshot-isolation": _PL2 | {"G-single"},
    "serializable": _PL2 | {"G-single", "G2-item"},
    "strict-serializable": _PL2 | {"G-single", "G2-item"},
}


def _forbidden(model: Model, anomaly: str) -> bool:
    base = anomaly.removesuffix("-realtime").removesuffix("-process")
    if anomaly.endswith("-realtime") and model != "strict-serializable":
        return False
    return base in FORBIDDEN[model]


def check_history(
    txns: Iterable[Txn],
    *,
    model: Model = "serializable",
    process: bool = False,
    realtime: bool | None = None,
    time_limit_s: float = ELLE_TIME_LIMIT_S,
    name: str = CHECK_NAME,
) -> Verdict:
    """Judge ``txns`` against ``model``; ``realtime`` defaults to the model's need.

    passed: False with a witness per anomaly found; True when none is; None (unknown)
    when the search passed ``time_limit_s`` without finding a forbidden anomaly, or
    the checker itself failed: never a pass.
    """
    if model not in FORBIDDEN:
        raise ValueError(f"unknown model {model!r}; choose one of {', '.join(FORBIDDEN)}")
    history = list(txns)
    use_realtime = model == "strict-serializable" if realtime is None else realtime
    started = time.monotonic()
    deadline = started + time_limit_s
    ticks = 0

    def check() -> None:
        nonlocal ticks
        ticks += 1
        if ticks & 1023 == 0 and time.monotonic() > deadline:
            raise TimeUp()

    by_id = {t.id: t for t in history}
    anomalies: dict[str, list[dict[str, Any]]] = {}
    figures: dict[str, Any] = {
        "model": model,
        "txns": len(history),
        "ops": sum(len(t.ops) for t in history),
        "process_edges": process,
        "realtime_edges": use_realtime,
    }
    timed_out = False
    try:
        inf = infer(history, process=process, realtime=use_realtime, check=check)
        anomalies.update(inf.anomalies)
        figures["edges"] = inf.graph.edge_count()
        figures["keys"] = len(inf.orders)
        order_kinds = (PROCESS if process else 0) | (REALTIME if use_realtime else 0)
        witnesses, cut = find_cycles(inf.graph, order_kinds, check)
        figures["searches_cut"] = sorted(cut)
        for w in witnesses:
            anomalies.setdefault(w.anomaly, []).append(w.to_dict(inf.graph, by_id))
    except TimeUp:
        timed_out = True
    except Exception as err:  # a crashed checker is unknown, never a pass
        figures["seconds"] = round(time.monotonic() - started, 4)
        return Verdict(name, None, f"checker failed: {type(err).__name__}: {err}", figures)
    figures["seconds"] = round(time.monotonic() - started, 4)
    figures["anomaly_types"] = sorted(anomalies)
    figures["anomalies"] = anomalies
    figures["witnesses"] = [c for cases in anomalies.values() for c in cases if "cycle" in c]
    bad = sorted(a for a in anomalies if _forbidden(model, a))
    if bad:
        first = anomalies[bad[0]][0]
        return Verdict(
            name,
            False,
            f"not {model}: {', '.join(bad)}; e.g. {bad[0]}: {_summary(first)}",
            figures,
        )
    if timed_out:
        return Verdict(
            name, None, f"unknown: the search passed its {time_limit_s:g} s bound", figures
        )
    if any(_forbidden(model, c) for c in figures.get("searches_cut", [])):
        return Verdict(
            name,
            None,
            f"unknown: a cycle was found, but the search for {', '.join(figures['searches_cut'])}"
            f" (forbidden by {model}) was cut short",
            figures,
        )
    allowed = f" (allowed by {model}: {', '.join(sorted(anomalies))})" if anomalies else ""
    return Verdict(
        name, True, f"{model}: no forbidden anomaly in {len(history)} txns{allowed}", figures
    )


def _summary(case: dict[str, Any]) -> str:
    if "edges" in case:
        return "; ".join(e["why"] for e in case["edges"])
    return str(case["why"])
