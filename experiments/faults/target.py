"""Network faults against an external target: the loopback proxy stands in front of the server.

    seed -> plan -> proxy (127.0.0.1, in front of the target's host:port) -> lab on
    the proxy's URL -> setup (proxy passing) -> schedule on, load, schedule done ->
    the load goes on ``after_s`` -> time until /health answers 200 through the proxy
    -> final state (when the target's database is given) -> checks -> Result

The same verdict names and figures as ``fault_experiment``, so a fault scenario's
notebook reads either. Nothing of the server is the lab's: no pool, no backends to
count; what the lab can see is the history, and the tables when it has the database.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from experiments.checks import FinalState
from experiments.checks_leaks import ThreadBaseline, check_leaks
from experiments.faults.experiment import fault_outcome
from experiments.faults.loads import BackingOff
from experiments.faults.proxy import TcpProxy
from experiments.faults.restart import time_to_recover
from experiments.faults.schedule import ProxySchedule, Step
from experiments.history import History
from experiments.lab import (
    check_target,
    open_lab,
)
from experiments.plans import Plan
from experiments.result import Result, Verdict
from experiments.run_record import lab_result, start_run
from experiments.runner import run_plan

__all__ = ["proxied_target_experiment"]

TargetExpect = Callable[[History, FinalState, TcpProxy], list[Verdict]]
#: After a request cut by the network, a worker waits this long before its next one.
#: Measured without it: a 0.4 s reset window in front of the target made 3,700
#: unknown claims (each worker retrying at once), more than linearizability decides in
#: its time bound; a real client backs off too.
BACKOFF_S = 0.1


def _healthy(url: str) -> bool:
    return httpx.get(f"{url}/health", timeout=2.0, trust_env=False).status_code == 200


def proxied_target_experiment(
    scenario: str,
    *,
    make_plan: Callable[[int, str], Plan],
    steps: list[Step],
    expect: TargetExpect,
    params: dict[str, Any],
    seed: int | None,
    strategy: str,
    target: str,
    database_url: str | None,
    op_timeout_s: float,
    run_timeout_s: float,
    after_s: float = 3.0,
    cleanup: bool = False,
    recover_timeout_s: float = 30.0,
) -> Result:
    """Run ``scenario`` against ``target`` through a proxy that follows ``steps``."""
    seed, prefix, started_at, t0 = start_run(scenario, seed, "http", strategy)
    plan = make_plan(seed, prefix)
    parts = urlsplit(check_target(target))
    if parts.scheme != "http":
        raise ValueError(f"the proxy forwards plain TCP: an http:// target, not {target!r}")
    proxy = TcpProxy(parts.hostname or "", parts.port or 80, seed=seed)
    baseline = ThreadBaseline()
    proxy.start()
    try:
        via = f"http://{proxy.listen_host}:{proxy.port}"
        with open_lab(
            scenario=scenario,
            layer="http",
            target=via,
            database_url=database_url,
            workers=plan.workers,
            op_timeout_s=op_timeout_s,
            prefix=prefix,
        ) as lab:
            lab.setup(plan)
            schedule = ProxySchedule(proxy, steps)
            stop_load = threading.Event()
            load_done = threading.Event()
            bound_s = sum(s.duration_s for s in steps) + 5

            def control() -> None:
                schedule.done.wait(bound_s)
                load_done.wait(after_s)
                stop_load.set()

            schedule.start()
            controller = threading.Thread(target=control, name="nemesis-control", daemon=True)
            controller.start()
            try:
                report = run_plan(
                    plan,
                    BackingOff(lab.client, BACKOFF_S, on=("unknown", "unavailable")),
                    lab.history,
                    phase="load",
                    run_timeout_s=run_timeout_s,
                    op_timeout_s=op_timeout_s,
                    stop=stop_load,
                )
            finally:
                load_done.set()
                schedule.stop()
                controller.join(timeout=bound_s + after_s + 10)
            windows = list(proxy.windows.windows)
            recover_s = time_to_recover(lambda: _healthy(via), timeout_s=recover_timeout_s)
            state = lab.state()
            cleaned = lab.cleanup() if cleanup else {}
    finally:
        proxy.stop()
    history = lab.history
    leaks = check_leaks(baseline, ignore_threads=["proxy-"])
    verdicts, summary = fault_outcome(
        history,
        state,
        report=report,
        windows=windows,
        expected=lambda: expect(history, state, proxy),
        recover_s=recover_s,
        recover_timeout_s=recover_timeout_s,
        healthy="the target answered /health through the proxy {s:.3f}s after the faults",
        unhealthy="no 200 from /health {timeout:.0f}s after the faults",
        leaks=leaks,
        head={"prefix": prefix, "target": target},
        figures=cleaned,
    )
    return lab_result(
        scenario,
        seed=seed,
        layer="http",
        strategy=strategy,
        database_url=database_url,
        op_timeout_s=op_timeout_s,
        run_timeout_s=run_timeout_s,
        params={
            "target": target,
            **params,
        },
        history=history,
        verdicts=verdicts,
        summary=summary,
        started_at=started_at,
        t0=t0,
    )
