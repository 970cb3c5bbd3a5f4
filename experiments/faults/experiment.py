"""The fault-scenario pipeline: the lab's experiment with a nemesis running alongside the load.

seed -> plan -> lab (run-unique application_name) -> setup -> fault on, load, fault
off -> the load goes on ``after_s`` to show recovery -> time to recover -> final
state -> the lab's always-on checks, the scenario's own, the leak check -> Result
with figures per fault (ops affected, errors by kind, time to recover, windows).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import psycopg

from coupon_core.database import DatabaseHandle, EmbeddedPostgres, provision
from experiments.checks import FinalState, always_on
from experiments.checks_leaks import ThreadBaseline, check_leaks
from experiments.faults.loads import BackingOff
from experiments.faults.restart import time_to_recover
from experiments.faults.window import Window, Windows, label_ops
from experiments.history import History
from experiments.lab import (
    Lab,
    latency_quantiles,
    open_lab,
    pool_stats_when_idle,
    state_figures,
)
from experiments.linearizability import LINEARIZABLE_TIME_LIMIT_S, check_linearizable
from experiments.plans import Plan
from experiments.result import Result, Verdict
from experiments.run_record import lab_result, start_run
from experiments.runner import NOT_STARTED, RunReport, run_plan

__all__ = [
    "FaultRun",
    "Nemesis",
    "fault_experiment",
    "fault_figures",
    "fault_outcome",
    "quiet_pool_log",
]


class Nemesis(Protocol):
    """What a fault scenario needs of a fault: start, stop, and the windows it was on."""

    @property
    def windows(self) -> Windows: ...

    def start(self) -> object: ...

    def stop(self) -> None: ...


class FaultRun:
    """What the scenario's callbacks see: the lab, the plan, and room for figures and verdicts."""

    def __init__(self, lab: Lab, plan: Plan, application_name: str, database_url: str) -> None:
        self.lab = lab
        self.plan = plan
        self.application_name = application_name
        #: The database itself (not a proxy in front of it): faults and leak checks use it.
        self.database_url = database_url
        self.figures: dict[str, Any] = {}
        self.verdicts: list[Verdict] = []


MakeFaults = Callable[[FaultRun], list[Nemesis]]
Expect = Callable[[History, FinalState, FaultRun], list[Verdict]]


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


def fault_outcome(
    history: History,
    state: FinalState,
    *,
    report: RunReport,
    windows: list[Window],
    expected: Callable[[], list[Verdict]],
    recover_s: float | None,
    recover_timeout_s: float,
    healthy: str,
    unhealthy: str,
    leaks: Verdict,
    head: dict[str, Any],
    figures: dict[str, Any],
) -> tuple[list[Verdict], dict[str, Any]]:
    """A fault run's verdicts and summary, once its load is over and its state read.

    Ops the time bound never started did not run: they leave ``history`` first, kept
    out of every figure; then the load's ops are labelled by phase, and only then
    ``expected()`` gives the scenario's own verdicts (they read those phases). ``healthy`` and ``unhealthy`` word the ``recovered`` verdict
    (``{s}``: seconds to recover; ``{timeout}``: ``recover_timeout_s``). ``head`` opens
    the summary (the prefix, what was run against), ``figures`` closes it.
    """
    history.discard(lambda o: o.message == NOT_STARTED)
    phases = label_ops([o for o in history.ops if o.phase == "load"], windows)
    verdicts = [
        *always_on(history, state, allow_unavailable=True, expect_no_timeouts=False),
        *expected(),
        Verdict(
            "recovered",
            recover_s is not None,
            healthy.format(s=recover_s)
            if recover_s is not None
            else unhealthy.format(timeout=recover_timeout_s),
            {"time_to_recover_s": recover_s},
        ),
        leaks,
        # Ops a fault cut short (unknown, unavailable) count as maybe-happened.
        check_linearizable(history, LINEARIZABLE_TIME_LIMIT_S),
    ]
    summary = {
        **head,
        "outcomes": history.counts(),
        "phases": phases,
        "time_to_recover_s": None if recover_s is None else round(recover_s, 4),
        "not_started": report.not_started,
        "wall_s": round(report.wall_s, 4),
        **fault_figures(history, windows),
        **state_figures(state),
        **figures,
    }
    return verdicts, summary


def fault_experiment(
    scenario: str,
    *,
    make_plan: Callable[[int, str], Plan],
    make_faults: MakeFaults,
    expect: Expect,
    params: dict[str, Any],
    seed: int | None,
    layer: str,
    strategy: str,
    database_url: str | None,
    op_timeout_s: float,
    run_timeout_s: float,
    fault_s: float = 1.0,
    after_s: float = 0.5,
    service_overrides: dict[str, Any] | None = None,
    pool_max: int | None = None,
    through: Callable[[str], tuple[str, Nemesis]] | None = None,
    recover_timeout_s: float = 30.0,
    faults_done: Callable[[], bool] | None = None,
    observers: MakeFaults | None = None,
    own_database: bool = False,
    read_url: str | None = None,
    server_workers: int = 0,
    backoff_s: float = 0.0,
) -> Result:
    """Run ``scenario``: see the module docstring.

    ``make_faults(run)`` builds the faults (it may set ``run.lab.service.fault``);
    they start in order just before the load, stop in reverse ``fault_s`` seconds
    into it (or when the plan runs out), and the load goes on ``after_s`` more.
    ``through(url)`` puts something (a proxy) between service and database: it
    returns the URL the service uses and the thing, started, to stop last.
    ``faults_done()`` ends the fault phase early once a self-timed fault finished.
    ``observers(run)`` builds watchers (no faults: their windows label nothing) that
    start with the faults and stop when the whole load, recovery included, is over.
    ``backoff_s``: a worker told "unavailable" pauses this long before its next op
    (``loads.BackingOff``), for faults that make the database unreachable.
    ``own_database`` runs on a fresh embedded cluster whatever ``database_url`` and
    ``DATABASE_URL`` say (a fault that stops the database must not stop a shared one).
    ``read_url`` sends the service's gets there (a standby of a replicated cluster).
    ``server_workers`` (HTTP): the lab serves from supervised worker processes.
    """
    seed, prefix, started_at, t0 = start_run(scenario, seed, layer, strategy)
    app = f"coupon-{prefix}"[:63]  # PostgreSQL keeps 63 bytes of application_name
    plan = make_plan(seed, prefix)
    baseline = ThreadBaseline()
    overrides = {"application_name": app, **(service_overrides or {})}
    windows: list[Window] = []
    with contextlib.ExitStack() as outer:
        outer.enter_context(quiet_pool_log())
        db_url = database_url
        handle: DatabaseHandle | None = None
        if own_database:
            # A fault that stops the database must not stop one that others share
            # (DATABASE_URL included): a fresh embedded cluster of this run's own.
            own = EmbeddedPostgres.create()
            outer.callback(own.close)
            own.start()
            handle, db_url = own, own.url
        elif db_url is None:
            # The lab would start a database of its own; start it here instead, so a
            # proxy can stand in front of it and a restart fault can reach it.
            handle = provision(None)
            outer.callback(handle.close)
            db_url = handle.url
        service_url = db_url
        middle: Nemesis | None = None
        if through is not None:
            service_url, middle = through(db_url)  # started: its URL needs its port
            outer.callback(middle.stop)
        with open_lab(
            scenario=scenario,
            layer=layer,
            strategy=strategy,
            database_url=service_url,
            workers=plan.workers,
            op_timeout_s=op_timeout_s,
            pool_max=pool_max,
            prefix=prefix,
            service_overrides=overrides,
            read_url=read_url,
            server_workers=server_workers,
        ) as lab:
            lab.database = handle
            fr = FaultRun(lab, plan, app, db_url)
            lab.setup(plan)
            faults = make_faults(fr)
            watchers = observers(fr) if observers is not None else []
            stop_load = threading.Event()
            load_done = threading.Event()

            def control() -> None:
                # The faults stay on fault_s, or until they say they are done.
                end = time.monotonic() + fault_s
                while time.monotonic() < end and not load_done.is_set():
                    if faults_done is not None and faults_done():
                        break
                    load_done.wait(0.05)
                for f in reversed(faults):
                    f.stop()
                load_done.wait(after_s)
                stop_load.set()

            for w in watchers:
                w.start()
            for f in faults:
                f.start()
            controller = threading.Thread(target=control, name="nemesis-control", daemon=True)
            controller.start()
            try:
                report = run_plan(
                    plan,
                    BackingOff(lab.client, backoff_s) if backoff_s > 0 else lab.client,
                    lab.history,
                    phase="load",
                    run_timeout_s=run_timeout_s,
                    op_timeout_s=op_timeout_s,
                    stop=stop_load,
                )
            finally:
                load_done.set()
                controller.join(timeout=fault_s + after_s + 180)
                for w in watchers:
                    w.stop()
            lab.service.fault = None
            for f in [*faults, *([middle] if middle else [])]:
                windows.extend(f.windows.windows)
            recover_s = time_to_recover(
                lambda: lab.service.health()[0], timeout_s=recover_timeout_s
            )
            pool_stats = pool_stats_when_idle(lab.service)
            try:
                lab.conn.execute("SELECT 1")
            except psycopg.Error:
                # The lab's own reading connection died with the fault (a restart, a kill).
                lab.conn = psycopg.connect(lab.database_url, autocommit=True, connect_timeout=10)
                outer.enter_context(lab.conn)
            state = lab.state()
        history = lab.history
        # After the lab closed the service and server, before the database goes.
        leaks = check_leaks(
            baseline,
            pool_stats=pool_stats,
            db_url=db_url,
            application_name=app,
            ignore_threads=["proxy-"] if middle else [],
        )
    verdicts, summary = fault_outcome(
        history,
        state,
        report=report,
        windows=windows,
        expected=lambda: [*expect(history, state, fr), *fr.verdicts],
        recover_s=recover_s,
        recover_timeout_s=recover_timeout_s,
        healthy="service healthy {s:.3f}s after the faults ended",
        unhealthy="service still unhealthy {timeout:.0f}s after the faults ended",
        leaks=leaks,
        head={"prefix": prefix, "application_name": app},
        figures=fr.figures,
    )
    return lab_result(
        scenario,
        seed=seed,
        layer=layer,
        strategy=strategy,
        database_url=database_url,
        op_timeout_s=op_timeout_s,
        run_timeout_s=run_timeout_s,
        params={
            **params,
        },
        history=history,
        verdicts=verdicts,
        summary=summary,
        started_at=started_at,
        t0=t0,
    )
