"""slow_clients: slow headers, a slow body, an idle and a cut connection, and a slowloris crowd."""

from __future__ import annotations

import json
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

from coupon_core.server import Limits
from experiments.checks import DRIVER_TEXT, FinalState
from experiments.clients import HttpClient
from experiments.faults.slow_clients import (
    PROBES,
    ProbeResult,
    SlowCrowd,
    claim_request,
    run_probe,
)
from experiments.history import History
from experiments.pipeline import Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.plans import Plan, PlannedOp
from experiments.result import Result, Verdict
from experiments.runner import RunReport, run_plan
from experiments.spec import Range, RunSpec

NAME = "slow_clients"
TITLE = "Slow clients"
DESCRIPTION = (
    "Raw sockets against the lab's server with a short request deadline: headers sent a "
    "byte at a time, a body that stops short of its Content-Length, a connection that "
    "sends nothing, a body cut mid-way by a FIN; then normal claims while a crowd of "
    "slowloris connections is held open. Expected: each slow request answered 408 with "
    "the contract's error body, the idle one closed, the cut one closed (or 408), each "
    "at the deadline and within it plus slack; no 5xx; nothing the probes sent written; "
    "every normal claim served quickly beside the crowd, and the crowd freed by the deadline."
)
DEFAULTS: dict[str, Any] = {
    # The server's request deadline here: short, so a run takes seconds (the server's
    # default is 10 s; the bound's mechanism is the same).
    "request_timeout_s": 1.5,
    # How far past the deadline an answer or close may come: scheduling on a busy
    # 2-core machine (the server runs in the lab's process).
    "slack_s": 3.0,
    "crowd": 100,
    "claims": 40,
    "workers": 4,
    "claim_bound_s": 2.0,
}
RANGES: dict[str, Range] = {
    "request_timeout_s": Range(0.2, 60, "the server's request deadline, in seconds"),
    "slack_s": Range(0.1, 60, "seconds past the deadline an answer may come"),
    "crowd": Range(1, 700, "below the server's connection bound (800) beside the clients"),
    "claims": Range(1, 10_000, "normal claims beside the crowd"),
    "workers": Range(1, 64, "threads of normal clients"),
    "claim_bound_s": Range(0.05, 60, "the slowest normal claim allowed, in seconds"),
}
#: The fault it injects (``coupon-chaos list`` shows it).
FAULT = (
    "raw sockets that send slowly, stop short, send nothing or cut their body,"
    " and a crowd of slowloris connections"
)
#: Raw sockets to a server: HTTP only.
LAYERS: tuple[str, ...] = ("http",)
#: It sets the deadline of the server it probes: a server the lab starts.
NEEDS: tuple[str, ...] = ("server", "tables")
CHECKS: tuple[str, ...] = (
    "slow_headers_timed_out",
    "slow_body_timed_out",
    "idle_closed",
    "cut_body_closed",
    "probes_wrote_nothing",
    "served_beside_crowd",
    "crowd_freed",
)
#: Each probe's check, and the endings it allows: a 408 with the contract's error body,
#: or a close without an answer; ``early`` says whether it may end before the deadline
#: (a cut body has nothing left to wait for: closing at once is right).
_PROBE_CHECKS: dict[str, tuple[str, frozenset[str], bool]] = {
    "slow_headers": ("slow_headers_timed_out", frozenset({"408"}), False),
    "slow_body": ("slow_body_timed_out", frozenset({"408"}), False),
    "idle": ("idle_closed", frozenset({"closed", "reset"}), False),
    "cut_body": ("cut_body_closed", frozenset({"closed", "reset", "408"}), True),
}
_CLOCK_S = 0.1  # the server's timer against the probe's clock, which starts before it


def _error_shape(r: ProbeResult) -> str | None:
    """What is wrong with a 408's body (None: the contract's ``{"error": "..."}``)."""
    if r.content_type != "application/json":
        return f"content type {r.content_type!r}"
    try:
        body = json.loads(r.body)
    except ValueError:
        return f"not JSON: {r.body[:80]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        return f"no error field: {r.body[:80]!r}"
    if DRIVER_TEXT.search(body["error"]):
        return f"driver text: {body['error']!r}"
    return None


def judge_probe(r: ProbeResult, timeout_s: float, slack_s: float) -> Verdict:
    """A probe's verdict: an allowed ending, at the deadline (not before) and within slack."""
    name, allowed, early = _PROBE_CHECKS[r.probe]
    ending = str(r.status) if r.ending == "status" else r.ending
    problems = []
    if ending not in allowed:
        held = " (the server still held it)" if r.ending == "open" else ""
        problems.append(f"ended {ending}{held}, expected {' or '.join(sorted(allowed))}")
    elif ending == "408" and (bad := _error_shape(r)) is not None:
        problems.append(f"408 without the contract's error body: {bad}")
    if r.seconds > timeout_s + slack_s:
        problems.append(f"after {r.seconds:.2f}s, past the deadline + slack")
    elif not early and r.ending != "open" and r.seconds < timeout_s - _CLOCK_S:
        problems.append(f"after {r.seconds:.2f}s, before the {timeout_s:g}s deadline")
    return Verdict(
        name,
        not problems,
        f"{r.probe}: {ending} after {r.seconds:.2f}s (deadline {timeout_s:g}s + {slack_s:g}s)"
        + ("" if not problems else ": " + "; ".join(problems)),
        {
            "ending": r.ending,
            "status": r.status,
            "seconds": r.seconds,
            "bytes_sent": r.bytes_sent,
            "deadline_s": timeout_s,
            "bound_s": timeout_s + slack_s,
        },
    )


def run(spec: RunSpec) -> Result:
    timeout_s = float(spec["request_timeout_s"])
    slack_s = float(spec["slack_s"])
    crowd_n = int(spec["crowd"])
    claims_n = int(spec["claims"])
    workers = min(int(spec["workers"]), claims_n)
    probe_bound_s = timeout_s + slack_s
    probes: list[ProbeResult] = []
    crowd_figures: dict[str, Any] = {}

    def make_plan(seed: int, prefix: str) -> Plan:
        normal = f"{prefix}-normal"
        ops = tuple(
            PlannedOp(i, i % workers, "claim", normal, user=f"{prefix}-u{i}")
            for i in range(claims_n)
        )
        return Plan(
            seed=seed,
            prefix=prefix,
            workers=workers,
            ops=ops,
            setup=((normal, claims_n), (f"{prefix}-probe", 10)),
            shape="slow_clients",
        )

    def drive(r: Run) -> RunReport:
        client = r.lab.client
        assert isinstance(client, HttpClient)
        # The server the client speaks to: the lab's own (or a test's, ``http_target``).
        url = urlsplit(client.base_url)
        host, port = url.hostname or "127.0.0.1", url.port or 80
        coupon = f"{r.prefix}-probe"
        head, _ = claim_request(host, port, coupon, f"{r.prefix}-probe-slow_headers")
        # Slow enough that a server without a deadline never gets the whole head
        # within the probe's bound (it would then get the request, and could write it).
        interval_s = 2 * probe_bound_s / len(head)
        with ThreadPoolExecutor(len(PROBES)) as pool:
            futures = [
                pool.submit(
                    run_probe,
                    name,
                    host,
                    port,
                    bound_s=probe_bound_s,
                    coupon=coupon,
                    user=f"{r.prefix}-probe-{name}",
                    **({"head_interval_s": interval_s} if name == "slow_headers" else {}),
                )
                for name in PROBES
            ]
            probes.extend(f.result() for f in futures)
        with SlowCrowd(host, port, crowd_n, interval_s=min(0.5, timeout_s / 3)) as crowd:
            started = time.monotonic()
            while crowd.open_now < crowd_n and time.monotonic() - started < probe_bound_s:
                time.sleep(0.01)
            full_at = time.monotonic()
            crowd_figures["held_at_start"] = crowd.open_now
            report = run_plan(
                r.plan,
                client,
                r.history,
                phase="beside_crowd",
                run_timeout_s=max(1.0, r.budget_s - probe_bound_s),
                op_timeout_s=spec.op_timeout_s,
            )
            crowd_figures["held_at_end"] = crowd.open_now
            # Its first connections opened by ``full_at``: each is the server's to free
            # by the deadline (+ slack).
            while crowd.freed < crowd_n and time.monotonic() < full_at + probe_bound_s:
                time.sleep(0.05)
            crowd_figures.update(
                n=crowd_n,
                freed=crowd.freed,
                opened=crowd.opened,
                failed_connects=crowd.failed_connects,
                freed_after_s=round(time.monotonic() - started, 3),
            )
        return report

    def expect(history: History, state: FinalState, r: Run) -> list[Verdict]:
        verdicts = [judge_probe(p, timeout_s, slack_s) for p in probes]
        probe_coupon = f"{r.prefix}-probe"
        amount = dict(r.plan.setup)[probe_coupon]
        stock, rows = state.coupons.get(probe_coupon), state.claim_rows(probe_coupon)
        verdicts.append(
            Verdict(
                "probes_wrote_nothing",
                stock == (amount, amount) and rows == 0,
                f"probe coupon (amount, remaining) {stock}, {rows} claim rows;"
                f" expected ({amount}, {amount}) and 0",
                {"coupon": stock, "claim_rows": rows},
            )
        )
        claims = [o for o in history.ops if o.phase == "beside_crowd"]
        slowest = max((o.latency_ns / 1e9 for o in claims), default=None)
        not_ok = {o.result for o in claims if o.result != "ok"}
        held = crowd_figures.get("held_at_start", 0)
        served = len(claims) == claims_n and not not_ok and slowest is not None
        figures = {"claims": len(claims), "slowest_s": slowest, "held_at_start": held}
        if held < crowd_n:
            verdicts.append(
                Verdict(
                    "served_beside_crowd",
                    None,
                    f"unknown: the crowd of {crowd_n} never was open at once (at most {held})",
                    figures,
                )
            )
        else:
            ok = served and slowest is not None and slowest <= float(spec["claim_bound_s"])
            verdicts.append(
                Verdict(
                    "served_beside_crowd",
                    ok,
                    f"{sum(o.result == 'ok' for o in claims)} of {claims_n} claims ok beside"
                    f" {held} slow connections"
                    + (f", other results {sorted(not_ok)}" if not_ok else "")
                    + (
                        ""
                        if slowest is None
                        else f"; slowest {slowest:.3f}s (bound {spec['claim_bound_s']:g}s)"
                    ),
                    figures,
                )
            )
        freed = crowd_figures.get("freed", 0)
        verdicts.append(
            Verdict(
                "crowd_freed",
                freed >= crowd_n,
                f"the server freed {freed} of the crowd's first {crowd_n} connections within"
                f" the deadline + slack ({probe_bound_s:g}s)",
                dict(crowd_figures),
            )
        )
        return verdicts

    return run_pipeline(
        spec,
        Workload(
            make_plan=make_plan,
            expect=expect,
            drive=drive,
            server_limits=Limits(request_timeout_s=timeout_s),
            summary=lambda r: {
                "request_timeout_s": timeout_s,
                "probes": [
                    {
                        "probe": p.probe,
                        "ending": p.ending,
                        "status": p.status,
                        "seconds": p.seconds,
                        "bytes_sent": p.bytes_sent,
                    }
                    for p in probes
                ],
                "crowd": dict(crowd_figures),
            },
        ),
    )
