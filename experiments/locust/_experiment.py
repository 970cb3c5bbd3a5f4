"""One scenario driven by Locust, start to finish: seed, plan, lab, swarm, merge, checks, result.

The lab serves the API (uvicorn on loopback, as for ``layer="http"``) unless a
``target`` URL is given, creates the plan's setup coupons through HTTP, and hands the
plan to a Locust master and its workers (``_swarm``). What comes back is merged onto
the master's clock (the lab's process shares it: the master is always started here)
and judged by the same checks as any scenario; the linearizability check gets each
worker process's clock uncertainty (``process_clocks``): it widens ops between
processes by it, keeps each process's own order exactly, and past
``max_clock_uncertainty_ms`` its verdict is unknown. The result also carries Locust's
own statistics and the path of its HTML report, and, for comparison, the
linearizability verdicts of the same history without the process clocks: every op
widened (one interval each), unwidened, and at face value.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from experiments.checks import FinalState, stampede_collided
from experiments.errors import SpecError
from experiments.figures import latency_quantiles
from experiments.history import History, Op, collision
from experiments.linearizability import (
    CHECK_NAME,
    LINEARIZABLE_TIME_LIMIT_S,
    MAX_CLOCK_UNCERTAINTY_MS,
    check_linearizable,
)
from experiments.locust._catalog import LOCUST_RANGES, driven
from experiments.locust._merge import (
    LOST,
    PLACEMENTS,
    UNREPORTED,
    merge,
    peak_overlap,
    phase_of,
    process_clocks,
    start_spread_ms,
)
from experiments.locust._swarm import SwarmRun, run_swarm
from experiments.pipeline import STAMPEDE_SHAPES, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.plans import Plan
from experiments.result import Result, Verdict
from experiments.runner import RunReport
from experiments.spec import RunSpec

__all__ = ["locust_stats", "run_locust", "save_locust_reports"]


def _percentile(histogram: Mapping[str, int], q: float) -> float | None:
    # Locust keeps response times as a histogram of rounded milliseconds.
    points = sorted((float(k), int(v)) for k, v in histogram.items())
    total = sum(n for _, n in points)
    if total == 0:
        return None
    rank = q * total
    seen = 0
    for value, n in points:
        seen += n
        if seen >= rank:
            return value
    return points[-1][0]


def locust_stats(entries: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Locust's statistics per request name: requests, failures, requests/s, percentiles (ms).

    Requests per second are over the whole run's span (first request to last), so a
    name with one request is not divided by a zero-length span of its own.
    """
    starts = [float(e["start_time"]) for e in entries if e.get("start_time")]
    ends = [float(e["last_request_timestamp"]) for e in entries if e.get("last_request_timestamp")]
    span = max(ends) - min(starts) if starts and ends else 0.0
    out: dict[str, dict[str, Any]] = {}
    for e in entries:
        n = int(e.get("num_requests", 0))
        times = e.get("response_times") or {}
        out[str(e.get("name"))] = {
            "requests": n,
            "failures": int(e.get("num_failures", 0)),
            "rps": round(n / span, 1) if span > 0 else None,
            "p50_ms": _percentile(times, 0.50),
            "p95_ms": _percentile(times, 0.95),
            "p99_ms": _percentile(times, 0.99),
            "max_ms": None
            if e.get("max_response_time") is None
            else round(float(e["max_response_time"]), 3),
        }
    return dict(sorted(out.items()))


def _placed(history: History, swarm: SwarmRun, plan: Plan, placement: str) -> History:
    setup = History(ops=[o for o in history.ops if o.phase == "setup"], origin_ns=history.origin_ns)
    return merge(
        swarm.reports,
        plan,
        window=(swarm.go_ns, swarm.end_ns),
        history=setup,
        placement=placement,  # type: ignore[arg-type]
        unassigned=swarm.unassigned,
    )


def _swarm_verdict(swarm: SwarmRun, plan: Plan, history: History) -> Verdict:
    planned = {o.op_id for o in plan.ops}
    merged = {o.op_id for o in history.ops if o.phase != "setup"}
    lost = [r.index for r in swarm.reports if r.lost]
    unreported = sum(1 for o in history.ops if o.message in (LOST, UNREPORTED))
    problems = []
    if swarm.error:
        problems.append(f"master: {swarm.error}")
    if swarm.unassigned:
        problems.append(f"{len(swarm.unassigned)} plan workers had no Locust user")
    if merged != planned:
        problems.append(f"{len(planned - merged)} planned ops missing from the merged history")
    if lost:
        problems.append(f"worker(s) {lost} lost ({unreported} ops unknown)")
    elif unreported:
        problems.append(f"{unreported} ops never reported")
    figures = {
        "workers": len(swarm.reports),
        "lost_workers": lost,
        "unreported_ops": unreported,
        "unassigned_plan_workers": swarm.unassigned,
        "ops_merged": len(merged),
        "ops_planned": len(planned),
    }
    detail = (
        "; ".join(problems)
        if problems
        else f"{len(merged)} ops from {len(swarm.reports)} workers, every planned op reported once"
    )
    return Verdict("swarm_complete", not problems, detail, figures)


def run_locust(
    scenario: str,
    *,
    processes: int = 2,
    seed: int | None = None,
    strategy: str = "row_lock",
    database_url: str | None = None,
    target: str | None = None,
    op_timeout_s: float = 10.0,
    run_timeout_s: float = 60.0,
    out_dir: str | Path | None = None,
    master_bind: str | None = None,
    expect_workers: int | None = None,
    worker_env: Mapping[int, Mapping[str, str]] | None = None,
    name: str | None = None,
    max_clock_uncertainty_ms: float = MAX_CLOCK_UNCERTAINTY_MS,
    **params: Any,
) -> Result:
    """Run the plan of ``scenario`` from a Locust master and ``processes`` workers.

    ``params`` override the scenario's figures (``stock``, ``users``, ...). ``target``
    is the base URL of a server the lab does not start (its database is still
    ``database_url`` or ``DATABASE_URL``, read for the final-state checks).
    ``name`` is the result's scenario name (the scenario's own by default).
    ``max_clock_uncertainty_ms`` bounds a worker process's clock uncertainty: past it
    the linearizability verdict is unknown (``MAX_CLOCK_UNCERTAINTY_MS`` says why); a
    value outside ``LOCUST_RANGES`` is a ``SpecError`` before any work.
    """
    which = driven(scenario)
    unknown = set(params) - set(which.defaults)
    if unknown:
        raise SpecError(f"{scenario}: unknown parameter(s) {sorted(unknown)}")
    if isinstance(max_clock_uncertainty_ms, bool) or not isinstance(
        max_clock_uncertainty_ms, int | float
    ):
        raise SpecError(
            f"max_clock_uncertainty_ms must be a number, not {max_clock_uncertainty_ms!r}"
        )
    LOCUST_RANGES["max_clock_uncertainty_ms"].check(
        "max_clock_uncertainty_ms", max_clock_uncertainty_ms
    )
    figures = {**which.defaults, **params}
    out = Path(out_dir) if out_dir is not None else Path(tempfile.mkdtemp(prefix="locust-"))
    spec = RunSpec(
        scenario=name or scenario,
        seed=seed,
        # The load goes over HTTP: the suite files it with the http layer.
        layer="http",
        strategy=strategy,
        database_url=database_url,
        op_timeout_s=op_timeout_s,
        run_timeout_s=run_timeout_s,
        target=target,
        params={
            "driver": "locust",
            "processes": processes,
            "max_clock_uncertainty_ms": max_clock_uncertainty_ms,
            **figures,
        },
    )
    placed: dict[str, History] = {}
    swarms: list[SwarmRun] = []

    def drive(r: Run) -> RunReport:
        base_url = r.lab.target or r.lab.server.url
        swarm = run_swarm(
            r.plan,
            base_url,
            out / r.prefix,
            processes=processes,
            master_bind=master_bind,
            expect_workers=expect_workers,
            op_timeout_s=op_timeout_s,
            run_timeout_s=r.budget_s,
            worker_env=worker_env,
        )
        swarms.append(swarm)
        placed.update({p: _placed(r.history, swarm, r.plan, p) for p in PLACEMENTS})
        # The checks read the ops on the master's clock, not widened; the linearizability
        # check widens between processes by their clocks (see the module).
        r.lab.history = placed["corrected"]
        r.clocks = process_clocks(swarm.reports)
        r.max_clock_uncertainty_ms = float(max_clock_uncertainty_ms)
        load = [o for o in placed["corrected"].ops if o.phase != "setup"]
        wall = (swarm.end_ns - swarm.go_ns) / 1e9 if swarm.end_ns and swarm.go_ns else 0.0
        return RunReport(
            r.plan.workers, len(r.plan.ops), len(load), 0, wall, start_spread_ms(load), False
        )

    def expect(history: History, state: FinalState, r: Run) -> list[Verdict]:
        return [
            _swarm_verdict(swarms[0], r.plan, history),
            *which.expect(history, state, r.plan, figures),
        ]

    def validity(r: Run) -> list[Verdict]:
        # Judged on the master's clock (offsets corrected, not widened: widening makes
        # every interval longer, and so would make any run look like a collision).
        if r.plan.shape not in STAMPEDE_SHAPES:
            return []
        # Every load op, whichever worker process ran it (its phase names the process).
        corrected = placed["corrected"]
        load = History(
            ops=[o for o in corrected.ops if o.phase != "setup"], origin_ns=corrected.origin_ns
        )
        return [stampede_collided(load, r.plan.workers, phase=None)]

    def judge(r: Run, verdicts: list[Verdict]) -> list[Verdict]:
        # Beside the verdict ("clocked"), what the same history says without the process
        # clocks: every op widened (one interval each, a process's own order erased),
        # unwidened, at face value (figures: the comparison that shows why the clocks
        # are there).
        clock_checks: dict[str, dict[str, Any]] = {
            "clocked": next(v.to_dict() for v in verdicts if v.name == CHECK_NAME)
        }
        for p in PLACEMENTS:
            clock_checks[p] = check_linearizable(placed[p], LINEARIZABLE_TIME_LIMIT_S).to_dict()
        r.figures["clock_checks"] = clock_checks
        r.figures.update(_load_figures(r.history, swarms[0], r.plan.workers))
        r.figures["max_clock_uncertainty_ms"] = r.max_clock_uncertainty_ms
        return verdicts

    return run_pipeline(
        spec,
        Workload(
            make_plan=lambda s, prefix: which.make_plan(s, prefix, figures),
            expect=expect,
            drive=drive,
            validity=validity,
            judge=judge,
        ),
    )


def _load_figures(corrected: History, swarm: SwarmRun, workers: int) -> dict[str, Any]:
    """The load's figures, over every worker process's ops (the pipeline's own count the
    ops of the ``load`` phase, which a Locust run has none of: its phases name processes)."""
    every = [o for o in corrected.ops if o.phase != "setup"]
    load = [o for o in every if o.message not in (LOST, UNREPORTED)]
    clocks = {}
    for r in swarm.reports:
        clock = r.clock()
        clocks[phase_of(r.index)] = {
            "users": r.users,
            "plan_workers": len(r.plan_workers),
            "ops": len(r.ops),
            "lost": r.lost,
            **(clock.to_dict() if clock is not None else {"offset_ms": None}),
        }
    widening = [c.uncertainty_ns for r in swarm.reports if (c := r.clock()) is not None]
    by_process: dict[str, list[Op]] = {}
    for o in load:
        by_process.setdefault(o.phase or "", []).append(o)
    firsts = [min(o.invoke_ns for o in ops) for ops in by_process.values() if ops]
    wall = (max(o.complete_ns for o in load) - min(o.invoke_ns for o in load)) / 1e9 if load else 0
    return {
        # The load's ops (as the pipeline counts them: the setup aside), lost ones included.
        "ops": len(every),
        "processes": len(swarm.reports),
        # On the master's clock (offsets corrected, not widened): how together the
        # release was, over every user and over the processes' first ops.
        "start_spread_ms": _round(start_spread_ms(load)),
        "process_start_spread_ms": _round((max(firsts) - min(firsts)) / 1e6 if firsts else None),
        "peak_overlap": peak_overlap(load),
        "peak_overlap_by_process": {k: peak_overlap(v) for k, v in sorted(by_process.items())},
        # Peak in flight and the overlap with the winner, as stampede_collided judges them.
        **collision(every, workers),
        "widening_ms": _round(max(widening) / 1e6 if widening else None),
        "clocks": clocks,
        "wall_s": round(wall, 4),
        "throughput_ops_s": round(len(load) / wall, 1) if wall > 0 else None,
        "latency": latency_quantiles(load),
        "latency_ok": latency_quantiles([o for o in load if o.result == "ok"]),
        "locust_stats": locust_stats(swarm.stats),
        "locust_html": str(swarm.html) if swarm.html else None,
        "locust_dir": str(swarm.out_dir),
    }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def save_locust_reports(result: Result, out_dir: str | Path) -> list[Path]:
    """Copy Locust's HTML report and statistics beside the lab's files of ``result``.

    Written as ``<scenario>-<layer>.locust.html`` and ``.locust-stats.json`` in
    ``out_dir``, next to what ``Result.save`` writes; returns the paths copied.
    """
    import shutil

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{result.scenario}-{result.layer}"
    source = result.summary.get("locust_dir")
    copied = []
    if source:
        for name, suffix in (
            ("locust-report.html", "locust.html"),
            ("locust-stats.json", "locust-stats.json"),
        ):
            path = Path(source) / name
            if path.exists():
                copied.append(Path(shutil.copy2(path, out / f"{stem}.{suffix}")))
    return copied
