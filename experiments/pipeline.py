"""The one pipeline: ``run(spec, workload) -> Result``, as named steps, for every experiment.

    start      draw the seed and print it (once for the run, whatever its attempts)
    provision  the lab context (``lab.provide``): the database (given, shared, a fresh one
               of the run's own, or a replicated cluster), anything put between service
               and database (a proxy), the service, the server or target, the client
    set up     the plan's coupons, created through the client
    drive      the plan run by the workers, the faults on and off as the workload
               says, the load going on to show recovery (or the workload's own drive)
    read       the final state of the run's rows
    check      the invariants every run keeps, linearizability, the leak check, the
               workload's expectations, its validity checks, its judge (findings)
    validity   the one redraw: an attempt whose only failures are validity checks (a
               stampede that did not collide) tested nothing and is run again on fresh
               coupons, at most ``ATTEMPTS`` times in all; an attempt with any other
               failed or unknown check stands at once; every attempt's verdicts are
               kept in the Result; a run that tested nothing after its attempts is
               ``no_experiment``, never green
    record     the Result: common parameters first, the attempts, the summary

A workload (``Workload``) is the partial spec a scenario declares: its plan, its
faults, its expectations, what it needs of the lab. The run's bound
(``spec.run_timeout_s``) holds for the whole run: attempts stop once it is spent, and
the load of an attempt gets what is left of it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import psycopg

from experiments.checks import FinalState, always_on, stampede_collided
from experiments.checks_leaks import ThreadBaseline, check_leaks
from experiments.faults.window import Window, Windows, label_ops
from experiments.figures import latency_quantiles, load_figures, state_figures
from experiments.history import History
from experiments.lab import DatabaseKind, Lab, Through, open_lab, pool_stats_when_idle
from experiments.linearizability import (
    LINEARIZABLE_TIME_LIMIT_S,
    MAX_CLOCK_UNCERTAINTY_MS,
    check_linearizable,
    started_ops,
)
from experiments.plans import Plan, draw_seed
from experiments.result import Attempt, Result, Verdict
from experiments.run_record import announce, run_prefix
from experiments.runner import NOT_STARTED, RunReport, run_plan
from experiments.spec import RunSpec

if TYPE_CHECKING:
    from coupon_core.cluster import ReplicatedCluster as Cluster
    from coupon_core.server import Limits

__all__ = [
    "ATTEMPTS",
    "STAMPEDE_SHAPES",
    "Nemesis",
    "Run",
    "Workload",
    "fault_figures",
    "quiet_pool_log",
    "run",
    "skipped",
]

#: Attempts of a run at most, the first included. Measured under two ``nice 19`` busy
#: loops on 2 cores: 7 of 30 ``atomic`` stampedes of 8 workers did not collide (0 of 30
#: on the quiet machine); four attempts leave about 1 in 400.
ATTEMPTS = 4
#: Plans whose point is that every worker's one op lands at once: their runs must collide.
STAMPEDE_SHAPES: frozenset[str] = frozenset({"stampede", "one_user"})


@runtime_checkable
class Nemesis(Protocol):
    """A fault: start, stop, and the windows it was on."""

    @property
    def windows(self) -> Windows: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...


@dataclass
class Run:
    """One attempt as the workload's callbacks see it: the spec, the plan, the lab, and
    room for figures and verdicts of their own."""

    spec: RunSpec
    seed: int
    plan: Plan
    lab: Lab
    #: The run-unique application_name of the service's connections (the leak check
    #: and the backend faults find them by it).
    application_name: str
    #: The database itself (not a proxy in front of it): faults and leak checks use it.
    database_url: str
    #: The replicated cluster the lab started, for a workload that asked for one.
    cluster: Cluster | None = None
    figures: dict[str, Any] = field(default_factory=dict)
    verdicts: list[Verdict] = field(default_factory=list)
    report: RunReport | None = None
    windows: list[Window] = field(default_factory=list)
    #: What the attempt may still spend of the run's bound, from the moment it began.
    budget_s: float = 60.0
    #: The final state, once read (the checks and the judge see it).
    state: FinalState | None = None
    #: Ops timed on other processes' clocks (Locust workers): phase -> that clock's
    #: uncertainty (ns, None: not measured) on the lab's clock, and the bound past which
    #: the linearizability check is unknown (``check_linearizable(clocks=...)``).
    clocks: Mapping[str, int | None] | None = None
    max_clock_uncertainty_ms: float = MAX_CLOCK_UNCERTAINTY_MS

    @property
    def history(self) -> History:
        return self.lab.history

    @property
    def prefix(self) -> str:
        return self.lab.prefix


Expect = Callable[[History, FinalState, Run], list[Verdict]]
Judge = Callable[[Run, list[Verdict]], list[Verdict]]
Checks = Literal["catalog", "faults", "own"]


@dataclass(frozen=True)
class Workload:
    """The workload's part of a run: what a scenario declares (see the module)."""

    #: (seed, prefix) -> the plan.
    make_plan: Callable[[int, str], Plan]
    #: The workload's own checks, once the state is read.
    expect: Expect
    #: Which shared checks it gets: the catalog's (no timeouts allowed), a fault
    #: scenario's (unavailable and timeouts allowed, ``recovered``), or only its own
    #: (``expect`` composes them: input_boundary judges each hostile request itself).
    checks: Checks = "catalog"
    #: The faults, started in order just before the load, stopped in reverse
    #: ``fault_s`` seconds into it; the load goes on ``after_s`` more.
    faults: Callable[[Run], list[Nemesis]] | None = None
    fault_s: float = 1.0
    after_s: float = 0.5
    #: Ends the fault phase early once a self-timed fault finished.
    faults_done: Callable[[], bool] | None = None
    #: Watchers that start with the faults and stop when the whole load is over.
    observers: Callable[[Run], list[Nemesis]] | None = None
    #: A worker whose op ended in one of ``backoff_on`` pauses this long before its next.
    backoff_s: float = 0.0
    backoff_on: tuple[str, ...] = ("unavailable",)
    recover_timeout_s: float = 30.0
    #: Instead of running the plan: the workload drives the lab itself.
    drive: Callable[[Run], RunReport] | None = None
    #: The lab: see ``lab.provide``.
    database: DatabaseKind = "shared"
    cluster_standbys: int = 1
    cluster_mode: str = "async"
    through: Through | None = None
    read_from_standby: bool = False
    server_workers: int = 0
    #: The request deadline and connection bound of the server the lab starts.
    server_limits: Limits | None = None
    service_overrides: Mapping[str, Any] = field(default_factory=dict)
    #: The workers the lab sizes its pool for (None: the plan's).
    lab_workers: int | None = None
    #: Validity checks (None: ``stampede_collided`` for a stampede-shaped plan).
    validity: Callable[[Run], list[Verdict]] | None = None
    #: Turns verdicts into findings (a known-unsafe configuration): it may replace the
    #: checks its evidence explains, and only those.
    judge: Judge | None = None
    #: The summary's last entries.
    summary: Callable[[Run], dict[str, Any]] | None = None


def run(spec: RunSpec, workload: Workload, *, name: str | None = None) -> Result:
    """Run ``workload`` as ``spec`` says: see the module."""
    scenario = name or spec.scenario
    seed = draw_seed(spec.seed)
    announce(scenario, seed, spec.layer, spec.strategy)
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    deadline = t0 + spec.run_timeout_s
    attempts: list[Attempt] = []
    result: Result | None = None
    while True:
        prefix = run_prefix(scenario)
        result = _attempt(spec, workload, scenario, seed, prefix, deadline)
        attempts.append(
            Attempt(len(attempts) + 1, prefix, list(result.verdicts), _validity_figures(result))
        )
        if result.status != "no_experiment":
            break
        if len(attempts) >= ATTEMPTS or time.monotonic() >= deadline:
            why = "attempts" if len(attempts) >= ATTEMPTS else "run bound"
            print(
                f"[{scenario}] no experiment after {len(attempts)} attempt(s) ({why} spent)",
                flush=True,
            )
            break
        print(
            f"[{scenario}] {_validity_detail(result)}: drawn again on fresh coupons"
            f" ({len(attempts) + 1} of at most {ATTEMPTS})",
            flush=True,
        )
    result.attempts = attempts
    result.summary["attempts"] = [
        {"number": a.number, "status": a.status, **a.figures} for a in attempts
    ]
    result.started_at = started_at
    result.duration_s = time.monotonic() - t0
    return result


def _validity_figures(result: Result) -> dict[str, Any]:
    """An attempt's collision figures: its least collided stampede's peak of its workers."""
    found = [
        (v.figures.get("peak_in_flight_share") or 0.0, v)
        for v in result.verdicts
        if v.validity and v.figures.get("peak_in_flight") is not None
    ]
    if not found:
        return {}
    v = min(found, key=lambda f: f[0])[1]
    return {"check": v.name, **{k: v.figures.get(k) for k in ("peak_in_flight", "workers")}}


def _validity_detail(result: Result) -> str:
    return "; ".join(v.detail for v in result.verdicts if v.validity and v.passed is not True)


def skipped(spec: RunSpec, reason: str, check: str = "runnable") -> Result:
    """The Result of a run that did not happen: one skipped check (``check``: what it
    lacked), with the reason."""
    seed = draw_seed(spec.seed)
    print(f"[{spec.scenario}] skipped: {reason}", flush=True)
    return Result(
        scenario=spec.scenario,
        seed=seed,
        layer=spec.layer,
        strategy=spec.strategy,
        params={**spec.common(), "seed": seed, **spec.params},
        history=History(),
        verdicts=[Verdict.skip(check, reason)],
        summary={"skipped": reason},
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )


# -- one attempt ---------------------------------------------------------------------------


@contextlib.contextmanager
def quiet_pool_log(level: int = logging.ERROR) -> Iterator[None]:
    """psycopg_pool warns about every dead connection it discards: under a fault that is
    the point, not news. Raise its logger's level for the run, then restore it."""
    logger = logging.getLogger("psycopg.pool")
    before = logger.level
    logger.setLevel(level)
    try:
        yield
    finally:
        logger.setLevel(before)


def _attempt(
    spec: RunSpec, w: Workload, scenario: str, seed: int, prefix: str, deadline: float
) -> Result:
    plan = w.make_plan(seed, prefix)
    app = f"coupon-{prefix}"[:63]  # PostgreSQL keeps 63 bytes of application_name
    baseline = ThreadBaseline()
    with contextlib.ExitStack() as stack:
        if w.checks == "faults":
            stack.enter_context(quiet_pool_log())
        lab = stack.enter_context(
            open_lab(
                scenario=scenario,
                layer=spec.layer,
                strategy=spec.strategy,
                database_url=spec.database_url,
                workers=w.lab_workers or plan.workers,
                op_timeout_s=spec.op_timeout_s,
                pool_max=spec.pool_max,
                prefix=prefix,
                service_overrides={"application_name": app, **w.service_overrides},
                server_workers=w.server_workers,
                target=spec.target,
                database=w.database,
                cluster_standbys=w.cluster_standbys,
                cluster_mode=w.cluster_mode,
                through=w.through,
                read_from_standby=w.read_from_standby,
                seed=seed,
                server_limits=w.server_limits,
            )
        )
        r = Run(
            spec=spec,
            seed=seed,
            plan=plan,
            lab=lab,
            application_name=app,
            database_url=lab.backend_url or lab.database_url,
            cluster=lab.cluster,
            budget_s=max(0.1, deadline - time.monotonic()),
        )
        lab.setup(plan)
        r.report = w.drive(r) if w.drive is not None else _drive(r, w)
        if r.report.timed_out:
            # The bound ended the load: said here, and in the summary (``run_bound``).
            print(
                f"[{scenario}] run bound of {spec.run_timeout_s:g} s reached:"
                f" {r.report.not_started} of {r.report.ops_planned} ops not started",
                flush=True,
            )
            r.figures["run_bound"] = {
                "run_timeout_s": spec.run_timeout_s,
                "reached": True,
                "not_started": r.report.not_started,
            }
        if lab.service_or_none is not None:
            lab.service_or_none.fault = None
        if isinstance(lab.middle, Nemesis):
            # A proxy in the middle is a fault too (network_faults): its windows count.
            r.windows.extend(lab.middle.windows.windows)
        recover_s = _recovery(r, w) if w.checks == "faults" else None
        pool_stats = (
            None if lab.service_or_none is None else pool_stats_when_idle(lab.service_or_none)
        )
        _reconnect(lab, stack)
        state = lab.state()
        cleaned = lab.cleanup() if spec.cleanup else {}
        lab.close_service()
        # After the service and the server closed, before the database goes.
        leaks = check_leaks(
            baseline,
            pool_stats=pool_stats,
            db_url=r.database_url or None,
            application_name=app,
            ignore_threads=["proxy-"] if lab.middle is not None else [],
        )
        # With the database (the cluster) still up: a check may read it (a failover's
        # old primary, rejoined as a standby).
        verdicts, summary = _check(r, w, state, leaks, recover_s)
    return Result(
        scenario=scenario,
        seed=seed,
        layer=spec.layer,
        strategy=spec.strategy,
        params={**spec.common(), "seed": seed, **dict(spec.params)},
        history=lab.history,
        verdicts=verdicts,
        summary={"prefix": prefix, "application_name": app, **summary, **cleaned},
    )


def _drive(r: Run, w: Workload) -> RunReport:
    """The plan run by its workers, with the faults on ``fault_s`` and the load going on
    ``after_s`` after them (a workload without faults: the plan, to its end)."""
    lab = r.lab
    faults = w.faults(r) if w.faults is not None else []
    watchers = w.observers(r) if w.observers is not None else []
    client = lab.client
    if w.backoff_s > 0:
        from experiments.faults.loads import BackingOff

        client = BackingOff(client, w.backoff_s, on=w.backoff_on)

    def load(stop: threading.Event | None = None) -> RunReport:
        return run_plan(
            r.plan,
            client,
            lab.history,
            phase="load",
            run_timeout_s=r.budget_s,
            op_timeout_s=r.spec.op_timeout_s,
            stop=stop,
        )

    if not faults and not watchers:
        return load()
    stop_load = threading.Event()
    load_done = threading.Event()

    def control() -> None:
        end = time.monotonic() + w.fault_s
        while time.monotonic() < end and not load_done.is_set():
            if w.faults_done is not None and w.faults_done():
                break
            load_done.wait(0.05)
        for f in reversed(faults):
            f.stop()
        load_done.wait(w.after_s)
        stop_load.set()

    for watcher in watchers:
        watcher.start()
    for f in faults:
        f.start()
    controller = threading.Thread(target=control, name="nemesis-control", daemon=True)
    controller.start()
    try:
        report = load(stop_load)
    finally:
        load_done.set()
        controller.join(timeout=w.fault_s + w.after_s + 180)
        for watcher in watchers:
            watcher.stop()
    for f in faults:
        r.windows.extend(f.windows.windows)
    return report


def _recovery(r: Run, w: Workload) -> float | None:
    from experiments.faults.restart import time_to_recover

    lab = r.lab
    if lab.service_or_none is not None:
        service = lab.service_or_none
        return time_to_recover(lambda: service.health()[0], timeout_s=w.recover_timeout_s)
    import httpx

    url = lab.target or ""

    def healthy() -> bool:
        return httpx.get(f"{url}/health", timeout=2.0, trust_env=False).status_code == 200

    return time_to_recover(healthy, timeout_s=w.recover_timeout_s)


def _reconnect(lab: Lab, stack: contextlib.ExitStack) -> None:
    """The lab's own reading connection may have died with the fault (a restart, a kill)."""
    if lab.conn_or_none is None:
        return
    try:
        lab.conn.execute("SELECT 1")
    except psycopg.Error:
        lab.conn = psycopg.connect(lab.database_url, autocommit=True, connect_timeout=10)
        stack.enter_context(lab.conn)


def _check(
    r: Run, w: Workload, state: FinalState, leaks: Verdict, recover_s: float | None
) -> tuple[list[Verdict], dict[str, Any]]:
    history = r.history
    report = r.report
    r.state = state
    faults = w.checks == "faults"
    if faults:
        # Ops the time bound never started did not run: out of every figure.
        history.discard(lambda o: o.message == NOT_STARTED)
    phases = label_ops([o for o in history.ops if o.phase == "load"], r.windows) if faults else None
    verdicts: list[Verdict] = []
    if w.checks != "own":
        verdicts += always_on(
            history, state, allow_unavailable=faults, expect_no_timeouts=not faults
        )
        # Setup creates are in the history (phase "setup"): no initial stock to pass.
        # Ops a fault cut short (unknown, unavailable) count as maybe-happened.
        verdicts.append(
            check_linearizable(
                started_ops(history),
                LINEARIZABLE_TIME_LIMIT_S,
                clocks=r.clocks,
                max_clock_uncertainty_ms=r.max_clock_uncertainty_ms,
            )
        )
        verdicts.append(leaks)
    if faults:
        verdicts.append(
            Verdict(
                "recovered",
                recover_s is not None,
                f"service healthy {recover_s:.3f}s after the faults ended"
                if recover_s is not None
                else f"service still unhealthy {w.recover_timeout_s:.0f}s after the faults ended",
                {"time_to_recover_s": recover_s},
            )
        )
    verdicts += [*w.expect(history, state, r), *r.verdicts]
    if w.checks == "own":
        verdicts.append(leaks)
    verdicts += _validity(r, w)
    if w.judge is not None:
        verdicts = w.judge(r, verdicts)
    summary: dict[str, Any] = {"outcomes": history.counts(), **state_figures(state)}
    if report is not None and not faults:
        summary.update(load_figures(history, report))
    if faults and report is not None:
        summary.update(
            {
                "phases": phases,
                "time_to_recover_s": None if recover_s is None else round(recover_s, 4),
                "not_started": report.not_started,
                "wall_s": round(report.wall_s, 4),
                **fault_figures(history, r.windows),
            }
        )
    summary.update(r.figures)
    if w.summary is not None:
        summary.update(w.summary(r))
    # Names unique within a result: Result refuses a second of one name.
    return verdicts, summary


def _validity(r: Run, w: Workload) -> list[Verdict]:
    if w.validity is not None:
        found = w.validity(r)
    elif r.plan.shape in STAMPEDE_SHAPES:
        found = [stampede_collided(r.history, r.plan.workers)]
    else:
        found = []
    return found


def fault_figures(history: History, windows: list[Window]) -> dict[str, Any]:
    """Per fault: ops affected, errors by kind, outcomes by phase, first success after it."""
    load = [o for o in history.ops if o.phase not in (None, "setup")]
    errors: dict[str, int] = {}
    by_phase: dict[str, dict[str, int]] = {}
    for o in load:
        if o.result != "ok":
            errors[o.result] = errors.get(o.result, 0) + 1
        ph = by_phase.setdefault(o.phase or "-", {})
        ph[o.result] = ph.get(o.result, 0) + 1
    in_window = [o for o in load if any(w.overlaps(o.invoke_ns, o.complete_ns) for w in windows)]
    end = max((w.end_ns for w in windows), default=None)
    first_ok_after = None
    if end is not None:
        oks = sorted(o.complete_ns for o in load if o.result == "ok" and o.invoke_ns >= end)
        first_ok_after = round((oks[0] - end) / 1e9, 4) if oks else None
    return {
        "ops": len(load),
        "ops_in_fault": len(in_window),
        "ops_affected": sum(
            1 for o in load if o.result in ("unavailable", "unknown", "server_error")
        ),
        "errors_by_kind": dict(sorted(errors.items())),
        "outcomes_by_phase": {k: dict(sorted(v.items())) for k, v in sorted(by_phase.items())},
        "first_ok_after_fault_s": first_ok_after,
        "windows": [w.to_dict(history.origin_ns) for w in windows],
        "latency_by_phase": {
            ph: latency_quantiles([o for o in load if o.phase == ph]) for ph in sorted(by_phase)
        },
    }
