"""network_faults: a TCP proxy between service and database goes through latency, throttle, stall, reset."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from experiments.checks import FinalState, Shared, results_within
from experiments.faults.loads import claim_stream_plan
from experiments.faults.proxy import TcpProxy
from experiments.faults.recovery import SERVES_AGAIN_S, claims_recovered
from experiments.faults.schedule import ProxySchedule, Step
from experiments.faults.window import Window
from experiments.history import History, Op
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.result import Result, Verdict
from experiments.scenarios._shapes import WORKERS
from experiments.spec import Range, RunSpec, SpecError

NAME = "network_faults"
TITLE = "Network faults"
DESCRIPTION = (
    "The service reaches PostgreSQL through a loopback TCP proxy that goes, on a seeded "
    "timetable: pass, latency 40 ms ±15, throttle 20 kB/s, stall 0.4 s, reset (live "
    "connections cut, new ones refused), pass. Expected: outcomes by phase: ok in pass, "
    "slower in latency/throttle/stall, clean unavailable around the reset; no 5xx, no "
    "partial claim, recovery after the proxy passes again. Against an external target "
    "(target=URL) the proxy stands in front of the target instead: cut requests end "
    "unknown, and the tables are read only with the target's database."
)
#: Against a target it needs nothing but HTTP (and the tables, for the table checks).
NEEDS = ("tables",)
DEFAULTS: dict[str, Any] = {
    "workers": 6,
    "latency_s": 0.04,
    "jitter_s": 0.015,
    "bytes_per_s": 20_000,
    "stall_s": 0.4,
    "reset_s": 0.4,
}
#: The fault it injects (``coupon-chaos list`` shows it).
FAULT = "a TCP proxy between the service and PostgreSQL: latency, throttle, stall, reset (live connections cut, new ones refused), on a seeded timetable"
#: The values each figure may take.
RANGES: dict[str, Range] = {
    "workers": WORKERS,
    "latency_s": Range(0.001, 1, "seconds added per chunk"),
    "jitter_s": Range(0, 1, "seconds"),
    "bytes_per_s": Range(1000, 10_000_000, "the throttle's rate"),
    "stall_s": Range(0.05, 5, "seconds"),
    "reset_s": Range(0.05, 5, "seconds"),
}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "faults"
CHECKS: tuple[str, ...] = (
    "claim_results",
    "get_results",
    "schedule_ran",
    "latency_applied",
    "throttle_applied",
    "stall_held",
    "reset_cut_connections",
    "service_recovered_in_bound",
)


COMMON: dict[str, Any] = {"op_timeout_s": 5.0, "run_timeout_s": 40.0}
#: After a request cut by the network, a worker waits this long before its next one.
#: Measured without it: a 0.4 s reset window in front of the target made 3,700
#: unknown claims (each worker retrying at once), more than linearizability decides in
#: its time bound; a real client backs off too.
TARGET_BACKOFF_S = 0.1
#: The longest the proxy's timetable waits for its baseline (one ok claim per worker).
BASELINE_WITHIN_S = 10.0


def run(spec: RunSpec) -> Result:
    workers = int(spec["workers"])
    latency_s, jitter_s = float(spec["latency_s"]), float(spec["jitter_s"])
    bytes_per_s = int(spec["bytes_per_s"])
    stall_s, reset_s = float(spec["stall_s"]), float(spec["reset_s"])
    target = spec.target
    proxies: list[TcpProxy] = []
    schedules: list[ProxySchedule] = []
    steps = [
        Step("pass", 0.3),
        Step("latency", 0.6, {"latency_s": latency_s, "jitter_s": jitter_s}),
        Step("throttle", 0.5, {"bytes_per_s": bytes_per_s}),
        Step("stall", stall_s),
        Step("reset", reset_s),
    ]

    def judge(
        history: History, sched: ProxySchedule, cut: set[str]
    ) -> tuple[dict[str, Any], list[Verdict]]:
        p = sched.proxy
        load = [o for o in history.ops if o.phase not in (None, "setup")]
        lat = {
            ph: sorted(o.latency_ns / 1e6 for o in load if o.phase == ph and o.result == "ok")
            for ph in ("before", "latency", "after")
        }
        med = {ph: _median(v) for ph, v in lat.items()}
        # The throttle's baseline: ok ops of both pass phases, before the faults and after
        # them. Before alone (0.3 s) held no ok op on a loaded machine over HTTP (the
        # first ops still warming up: baseline None, the throttle check failed with its
        # ops 5x slower).
        med["pass"] = _median(sorted(lat["before"] + lat["after"]))
        # Each phase's window, from the proxy (the pipeline's list holds them twice: the
        # proxy in the middle and the schedule that drives it are the same windows).
        windows = {w.phase: w for w in reversed(p.windows.windows)}
        in_phase = {
            ph: [o for o in load if w.overlaps(o.invoke_ns, o.complete_ns)]
            for ph, w in windows.items()
        }
        figures = {
            "proxy": {
                "accepted": p.accepted,
                "refused": p.refused,
                "resets": p.resets,
                "bytes_up": p.bytes_up,
                "bytes_down": p.bytes_down,
            },
            "median_ok_latency_ms": med,
            "ops_in_phase": {ph: len(ops) for ph, ops in in_phase.items()},
        }
        slowed = med["latency"] is not None and med["latency"] >= latency_s * 1000 * 0.8
        return figures, [
            results_within(history, "claim", {"ok", *cut}),
            results_within(history, "get", {"ok", *cut}),
            sched.ran_as_planned(),
            Verdict(
                "latency_applied",
                slowed,
                f"median ok latency in the latency phase {med['latency']} ms "
                f"(before: {med['before']} ms, injected {latency_s * 1000:.0f} ms)",
                {"median_ms": med},
            ),
            _throttle_applied(load, med["pass"], bytes_per_s, len(in_phase.get("throttle", []))),
            _stall_held(windows.get("stall"), in_phase.get("stall", [])),
            _reset_cut(p, in_phase.get("reset", []), cut),
        ]

    def through(url: str, cluster: object, seed: int) -> tuple[str, Nemesis]:
        if target is not None:
            # In front of the target's host:port: the lab's client speaks to the proxy.
            parts = urlsplit(url)
            if parts.scheme != "http":
                raise SpecError(f"the proxy forwards plain TCP: an http:// target, not {url!r}")
            proxy = TcpProxy(parts.hostname or "", parts.port or 80, seed=seed)
            proxy.start()
            proxies.append(proxy)
            return f"http://{proxy.listen_host}:{proxy.port}", proxy
        proxy = TcpProxy.for_url(url)
        proxies.append(proxy)
        proxy.start()
        return proxy.conninfo(url), proxy

    def faults(fr: Run) -> list[Nemesis]:
        proxies[-1].reseed(fr.plan.seed)  # the run's seed, drawn after the proxy was made
        history = fr.lab.history
        # The latency and throttle verdicts compare with the ops before them: the
        # timetable waits for a baseline of one ok claim per worker.
        sched = ProxySchedule(
            proxies[-1],
            steps,
            begin_when=lambda: _ok_load_ops(history) >= workers,
            begin_within_s=BASELINE_WITHIN_S,
        )
        schedules.append(sched)
        return [sched]

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        # Between client and server a cut request's effect is unknown: it may have landed.
        cut = {"unavailable", "unknown"} if target is not None else {"unavailable"}
        found, verdicts = judge(history, schedules[-1], cut)
        fr.figures.update(found)
        ws = proxies[-1].windows.windows
        end = max((w.end_ns for w in ws), default=None)
        return [
            *verdicts,
            claims_recovered(history, end, SERVES_AGAIN_S, what="the proxy passed again"),
        ]

    return run_pipeline(
        spec,
        Workload(
            checks=SHARED,
            make_plan=lambda s, p: claim_stream_plan(s, p, workers=workers, ops_per_worker=3000),
            faults=faults,
            expect=expect,
            fault_s=BASELINE_WITHIN_S + sum(s.duration_s for s in steps) + 5,
            # Longer than the pool timeout and the recovery bound: ops cut by the reset
            # end first, then recovery shows.
            after_s=3.0,
            through=through,
            faults_done=lambda: bool(schedules) and schedules[-1].done.is_set(),
            service_overrides={"pool_timeout": 2.0, "connect_timeout": 2.0},
            # The reset makes the database unreachable: the circuit breaker then refuses
            # at once, and without a pause the plan would be spent on refusals.
            backoff_s=TARGET_BACKOFF_S if target is not None else 0.05,
            backoff_on=("unknown", "unavailable") if target is not None else ("unavailable",),
        ),
    )


#: An op that completed within this of the stall's start may have had its answer on the
#: way already (a pump checks the phase between a read and its send); later, none can.
STALL_GRACE_S = 0.1


def _median(values: list[float]) -> float | None:
    return values[len(values) // 2] if values else None


def _ok_load_ops(history: History) -> int:
    return sum(1 for o in list(history.ops) if o.phase == "load" and o.result == "ok")


def _throttle_applied(
    load: list[Op], before_ms: float | None, bytes_per_s: int, ops_in: int
) -> Verdict:
    """Ops in the throttle phase slower than before it by at least half the proxy's pace
    (each slice of ``bytes_per_s // 50`` bytes is followed by its share of a second)."""
    pace_ms = max(1, bytes_per_s // 50) / bytes_per_s * 1000
    med = _median(sorted(o.latency_ns / 1e6 for o in load if o.phase == "throttle"))
    slowed = med is not None and before_ms is not None and med >= before_ms + pace_ms / 2
    return Verdict(
        "throttle_applied",
        ops_in > 0 and slowed,
        f"{ops_in} ops met the throttle; median latency there {med} ms "
        f"(pass phases: {before_ms} ms; needs + {pace_ms / 2:g} ms, half a {pace_ms:g} ms pace)",
        {"ops": ops_in, "median_ms": med, "before_ms": before_ms, "pace_ms": pace_ms},
    )


def _stall_held(w: Window | None, ops: list[Op]) -> Verdict:
    """Ops met the stall, and none completed ok while it held: nothing got through."""
    if w is None:
        return Verdict("stall_held", False, "the stall phase never ran")
    grace_ns = int(STALL_GRACE_S * 1e9)
    through = [
        o.op_id
        for o in ops
        if o.result == "ok" and w.start_ns + grace_ns < o.complete_ns < w.end_ns
    ]
    return Verdict(
        "stall_held",
        bool(ops) and not through,
        f"{len(ops)} ops met the {w.duration_s:.3f}s stall; {len(through)} completed ok "
        "while it held",
        {"ops": len(ops), "ok_during_stall": through[:20]},
    )


def _reset_cut(p: TcpProxy, ops: list[Op], cut: set[str]) -> Verdict:
    """The reset cut live connections (or refused new ones), and ops met it as cut."""
    refused = [o for o in ops if o.result in cut]
    return Verdict(
        "reset_cut_connections",
        (p.resets > 0 or p.refused > 0) and bool(refused),
        f"{p.resets} live connections reset, {p.refused} refused; "
        f"{len(refused)} of {len(ops)} ops that met the reset ended {'/'.join(sorted(cut))}",
        {"resets": p.resets, "refused": p.refused, "ops": len(ops), "cut": len(refused)},
    )
