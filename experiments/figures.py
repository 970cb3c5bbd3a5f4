"""The lab's figures, each defined once: which ops a figure counts, how it is taken and read.

A report quoted the same figure twice and disagreed with itself: the latency chart's "ok"
curve mixed the setup create with the claims (n=6) where the summary table counted the
claims alone (n=5), and took its quantiles another way; ``operations 51`` stood beside
``ops 50``; the console said ``passed`` where the page said ``9 passed, 7 skipped``. Every
page, the console and ``compare`` read these definitions, and a test per figure holds the
places that show it equal (``tests/experiments/test_figures.py``).

- **load ops**: the ops a run's figures count (latency, throughput, ``ops``): every op outside
  the ``setup`` phase (the coupons the lab creates before the stampede), or only those of one
  phase (``scale``'s sizes). Latency counts the ones that started (``started``).
- **quantiles**: linear interpolation between the closest ranks (Hyndman and Fan's type 7:
  ``numpy.quantile``'s default, ``statistics.quantiles(method="inclusive")``).
- **setup ops**: their ids are negative (-1 is the first coupon the lab created before the
  load; ``op_text`` says so wherever an op id is shown).
- **counts**: how a set of statuses or checks reads (``3 of 5 passed, 1 skipped``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from experiments.checks.state import FinalState
from experiments.history import History, Op, collision
from experiments.runner import RunReport

__all__ = [
    "LABELS",
    "QUANTILES",
    "SETUP_PHASE",
    "SUMMARY_LABELS",
    "check_counts",
    "check_words",
    "latency_ms",
    "latency_quantiles",
    "load_figures",
    "load_ops",
    "ms",
    "op_ids_text",
    "op_text",
    "phase_counts",
    "quantile",
    "run_badge",
    "run_label",
    "run_words",
    "started",
    "state_figures",
    "status_counts",
]

#: The phase of the ops the lab runs before the load (its coupons' creates).
SETUP_PHASE = "setup"
#: The quantiles every latency figure gives, with the key it reads under.
QUANTILES: tuple[tuple[float, str], ...] = ((0.5, "p50_ms"), (0.9, "p90_ms"), (0.99, "p99_ms"))

#: How a summary figure reads in a table: the name says which ops it counts.
SUMMARY_LABELS: dict[str, str] = {
    "ops": "load ops",
    "wall_s": "load wall_s",
    "throughput_ops_s": "load throughput_ops_s",
    "latency": "latency (load ops)",
    "latency_ok": "latency (ok load ops)",
}


# -- which ops ------------------------------------------------------------------------------


def load_ops(ops: Iterable[Op], phase: str | None = None) -> list[Op]:
    """The ops a run's figures count: all but the setup ops, or those of ``phase``."""
    if phase is not None:
        return [o for o in ops if o.phase == phase]
    return [o for o in ops if o.phase != SETUP_PHASE]


def started(ops: Iterable[Op]) -> list[Op]:
    """The ops that began (the run's time bound stopped none of them first)."""
    from experiments.runner import NOT_STARTED  # the runner's word; figures stay light

    return [o for o in ops if o.message != NOT_STARTED]


def phase_counts(ops: Sequence[Op]) -> dict[str, int]:
    """``{"all": 51, "setup": 1, "load": 50}``: every op, then each phase's (in order seen)."""
    out: dict[str, int] = {"all": len(ops)}
    for o in ops:
        key = o.phase or "without a phase"
        out[key] = out.get(key, 0) + 1
    return out


# -- how a latency is taken and read --------------------------------------------------------


def latency_ms(ops: Iterable[Op]) -> list[float]:
    """The ops' latencies in ms, sorted."""
    return sorted(o.latency_ns / 1e6 for o in ops)


def quantile(sorted_values: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values, linear between the closest ranks; None if empty."""
    n = len(sorted_values)
    if n == 0:
        return None
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"a quantile lies in [0, 1], not {q}")
    pos = (n - 1) * q
    lo = int(pos)
    hi = min(lo + 1, n - 1)
    return float(sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo))


def latency_quantiles(ops: Iterable[Op]) -> dict[str, float | None]:
    """p50, p90, p99 and max latency in ms of ``ops`` (None when there are none), to 1 us."""
    lat = latency_ms(ops)
    out: dict[str, float | None] = {}
    for q, key in QUANTILES:
        value = quantile(lat, q)
        out[key] = None if value is None else round(value, 3)
    out["max_ms"] = round(lat[-1], 3) if lat else None
    return out


def ms(value: float | None) -> str:
    """A latency as every page prints it: ``12.14 ms`` (four significant digits)."""
    return "-" if value is None else f"{value:.4g} ms"


# -- op ids ---------------------------------------------------------------------------------


def op_text(op_id: int, ops: Iterable[Op] = ()) -> str:
    """An op id as a reader meets it: ``op 3 (claim u3 -> no_stock)``; setup ids explained.

    Ids below 0 are the lab's setup ops (the coupons it created before the load), which
    a witness may name: ``op -1`` alone read as a bug in the report.
    """
    found = next((o for o in ops if o.op_id == op_id), None)
    what = ""
    if found is not None:
        who = f" {found.user}" if found.user else ""
        what = f"{found.kind}{who} {found.coupon} -> {found.result}"
    if op_id < 0:
        why = f"setup op {-op_id}: the lab created this coupon before the load"
        return f"op {op_id} ({why}{'; ' + what if what else ''})"
    return f"op {op_id}" + (f" ({what})" if what else "")


def op_ids_text(value: Any, ops: Iterable[Op] = ()) -> str:
    """A figure holding op ids (``witness_op_ids``), each setup id explained (``op_text``)."""
    ops = list(ops)
    if isinstance(value, int) and not isinstance(value, bool):
        return op_text(value, ops) if value < 0 else str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(op_ids_text(v, ops) for v in value) + "]"
    return str(value)


# -- how counts read ------------------------------------------------------------------------


def status_counts(statuses: Iterable[str]) -> dict[str, int]:
    """How many of each status (pass, FAIL, unknown, no_experiment, skipped, interrupted)."""
    out: dict[str, int] = {}
    for s in statuses:
        out[s] = out.get(s, 0) + 1
    return out


#: How a status reads on the console and the pages.
LABELS: dict[str, str] = {
    "pass": "pass",
    "FAIL": "FAIL",
    "unknown": "unknown",
    "no_experiment": "not an experiment",
    "skipped": "skipped",
    "interrupted": "interrupted",
}


def run_label(status: str, passed: int, skipped: int, checks_skipped: int) -> str:
    """A run's (or a notebook's) status as its badge reads: ``1 passed, 9 skipped``.

    A pass that skipped scenarios or checks says how many: ``7 passed, 45 checks skipped``
    (a target run without its database skips the checks that read the tables).
    """
    if status == "pass" and (skipped or checks_skipped):
        said = [f"{passed} passed"]
        said += [f"{skipped} skipped"] if skipped else []
        said += [f"{checks_skipped} checks skipped"] if checks_skipped else []
        return ", ".join(said)
    return LABELS.get(status, status)


def run_badge(status: str, skipped: int, checks_skipped: int) -> str:
    """The CSS class of a badge: green only for a pass that skipped nothing."""
    if status == "pass" and (skipped or checks_skipped):
        return "partial"
    return status.lower()


_STATUS_WORDS = (
    ("FAIL", "failed"),
    ("unknown", "unknown"),
    ("no_experiment", "not an experiment"),
    ("skipped", "skipped (not run)"),
    ("interrupted", "interrupted"),
)


def run_words(statuses: Sequence[str], checks_skipped: int = 0) -> str:
    """``3 of 5 passed, 1 failed, 1 skipped (not run), 7 checks skipped``: all a run holds.

    ``of`` counts every scenario, the skipped ones included, and a skip is never a
    failure: a run that skipped 9 of 10 reads ``1 of 10 passed, 9 skipped (not run)``.
    """
    counts = status_counts(statuses)
    said = [f"{counts.get('pass', 0)} of {len(statuses)} passed"]
    said += [f"{counts[s]} {word}" for s, word in _STATUS_WORDS if counts.get(s)]
    said += [f"{checks_skipped} checks skipped"] if checks_skipped else []
    return ", ".join(said)


def check_counts(checks: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """A notebook's checks: how many ran, passed, failed, were unknown or skipped."""
    out = {"checks": 0, "passed": 0, "failed": 0, "unknown": 0, "skipped": 0}
    for c in checks:
        out["checks"] += 1
        if c.get("skipped"):
            out["skipped"] += 1
        elif c.get("passed") is True:
            out["passed"] += 1
        elif c.get("passed") is False:
            out["failed"] += 1
        else:
            out["unknown"] += 1
    return out


def check_words(word: str, checks: Iterable[Mapping[str, Any]]) -> str:
    """A status word with the skipped checks beside it: ``passed, 7 skipped``.

    A pass whose checks were partly skipped is not a whole pass: every place that says
    ``passed`` says how many checks it did not run.
    """
    skipped = check_counts(checks)["skipped"]
    return f"{word}, {skipped} skipped" if skipped else word


# -- a run's summary ------------------------------------------------------------------------


def load_figures(history: History, report: RunReport, phase: str | None = "load") -> dict[str, Any]:
    """Counts, start spread, latency quantiles and throughput of one run's load ops."""
    # The ops defined above: the page's charts and tables read the same ones.
    ops = load_ops(history.ops, phase) if phase is not None else list(history.ops)
    run = started(ops)
    return {
        "ops": len(ops),
        "start_spread_ms": None
        if report.start_spread_ms is None
        else round(report.start_spread_ms, 3),
        # Beside the spread, whether the ops really overlapped (see history.collision).
        **collision(run, report.workers),
        "wall_s": round(report.wall_s, 4),
        "throughput_ops_s": round(len(run) / report.wall_s, 1) if report.wall_s > 0 else None,
        "latency": latency_quantiles(run),
        "latency_ok": latency_quantiles([o for o in run if o.result == "ok"]),
        "runner": report.to_dict(),
    }


def state_figures(state: FinalState) -> dict[str, Any]:
    if state.unavailable is not None:
        return {
            "final_stock": {},
            "claim_rows": {},
            "coupons": None,
            "tables": f"skipped: {state.unavailable}",
        }
    return {
        "final_stock": {name: remaining for name, (_, remaining) in state.coupons.items()},
        "claim_rows": {name: state.claim_rows(name) for name in state.coupons},
        "coupons": len(state.coupons),
    }
