"""failover: the primary of a replicated cluster is killed mid-load and a standby promoted."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg

from coupon_core.cluster import MODES, ReplicatedCluster
from coupon_core.database import replicated
from experiments.checks import FinalState, read_state
from experiments.faults.experiment import FaultRun, Nemesis, fault_experiment
from experiments.faults.loads import claim_stream_plan
from experiments.faults.replication import Failover, FailoverCommand, ReplicationLinks
from experiments.history import History
from experiments.lab import common_params
from experiments.plans import draw_seed
from experiments.replica_checks import (
    lost_acknowledged_claims,
    lost_claims_on_old_primary,
    no_lost_acknowledged_claims,
    unavailability,
)
from experiments.result import Result, Verdict

NAME = "failover"
TITLE = "Failover of a replicated PostgreSQL"
DESCRIPTION = (
    "8 workers claim on a primary with one streaming standby (replication mode a "
    "parameter); the replication link is cut (cut_link), the primary SIGKILLed and the "
    "standby promoted; the service finds it through a multi-host URL "
    "(target_session_attrs=read-write). Checks: no acknowledged claim lost (the lost "
    "ones named, and read back from the old primary), conservation and one claim per "
    "user on the survivor, linearizability with in-flight ops unknown, the "
    "unavailability window. async + cut link is unsafe: the lost claims are the "
    "expected finding. By URL: database_url (multi-host) and failover_command."
)
DEFAULTS: dict[str, Any] = {
    "mode": "async",
    "cut_link": True,
    "how": "kill",
    "standbys": 1,
    "workers": 8,
    "delay_s": 0.8,
    "cut_s": 0.6,
    "detect_s": 0.3,
    "rejoin": True,
    "failover_command": None,
}
#: The checks an unsafe configuration is expected to fail, all because of the loss.
_LOSS_CHECKS = ("no_lost_acknowledged_claims", "claims_match_history", "linearizable")


def unsafe(mode: str) -> bool:
    """Asynchronous replication may lose acknowledged commits; with a cut link it does."""
    return mode == "async"


def run(
    *,
    seed: int | None = None,
    layer: str = "service",
    strategy: str = "row_lock",
    database_url: str | None = None,
    op_timeout_s: float = 5.0,
    run_timeout_s: float = 30.0,
    mode: str = "async",
    cut_link: bool = True,
    how: str = "kill",
    standbys: int = 1,
    workers: int = 8,
    delay_s: float = 0.8,
    cut_s: float = 0.6,
    detect_s: float = 0.3,
    rejoin: bool = True,
    failover_command: str | None = None,
) -> Result:
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if how not in ("kill", "switchover"):
        raise ValueError(f"how must be 'kill' or 'switchover', not {how!r}")
    params: dict[str, Any] = {
        "mode": mode,
        "cut_link": cut_link,
        "how": how,
        "standbys": standbys,
        "workers": workers,
        "delay_s": delay_s,
        "cut_s": cut_s,
        "detect_s": detect_s,
        "rejoin": rejoin,
        "failover_command": "***" if failover_command else None,
    }
    common = {
        "seed": seed,
        "layer": layer,
        "strategy": strategy,
        "op_timeout_s": op_timeout_s,
        "run_timeout_s": run_timeout_s,
    }
    if database_url is not None:
        return _by_url(database_url, failover_command, workers, delay_s, params, common)
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        cluster = replicated(standbys=standbys, mode=mode)
        stack.callback(cluster.close)
        setup_s = time.monotonic() - t0
        result = _run_on(cluster, params, common, cut_link, how, delay_s, cut_s, detect_s, rejoin)
        result.summary["cluster_setup_s"] = round(setup_s, 3)
    result.duration_s = time.monotonic() - t0
    return result


def _run_on(
    cluster: ReplicatedCluster,
    params: dict[str, Any],
    common: dict[str, Any],
    cut_link: bool,
    how: str,
    delay_s: float,
    cut_s: float,
    detect_s: float,
    rejoin: bool,
) -> Result:
    nemeses: list[Failover] = []
    links: list[ReplicationLinks] = []
    extra: dict[str, Any] = {}

    def through(url: str) -> tuple[str, Nemesis]:
        # The replication link runs through the lab's proxy; the service's URL is unchanged.
        link = ReplicationLinks(cluster, seed=common["seed"] or 0).start()
        links.append(link)
        return url, link

    def faults(fr: FaultRun) -> list[Nemesis]:
        f = Failover(
            cluster,
            links[0],
            how="kill" if how == "kill" else "switchover",
            delay_s=delay_s,
            cut_before_s=cut_s if cut_link else None,
            detect_s=detect_s,
        )
        nemeses.append(f)
        return [f]

    def expect(history: History, state: FinalState, fr: FaultRun) -> list[Verdict]:
        f = nemeses[0]
        lost = lost_acknowledged_claims(history, state)
        old_state: FinalState | None = None
        old = f.old_node
        if old is not None and old.role == "down":
            with (
                contextlib.suppress(Exception),
                cluster.inspect(old) as old_url,
                psycopg.connect(old_url, autocommit=True, connect_timeout=10) as conn,
            ):
                old_state = read_state(conn, fr.lab.prefix)
            if rejoin:
                t = time.monotonic()
                cluster.rejoin(old)
                cluster.wait_streaming()
                extra["rewind_s"] = round(time.monotonic() - t, 3)
        window = unavailability(history, f.down_ns, f.promoted_ns)
        if window is not None:
            # The timeline shades the ops of this phase: the window clients saw.
            for o in history.ops:
                if o.phase != "setup" and window.overlaps(o.invoke_ns, o.complete_ns):
                    o.phase = "unavailable"
        fr.figures["witness_op_ids"] = [o.op_id for o in lost]
        fr.figures.update(
            {
                "configuration": _configuration(cluster.mode, cut_link, how),
                "old_primary": f.old_primary,
                "new_primary": f.new_primary,
                "promote_s": None if f.promote_s is None else round(f.promote_s, 4),
                "unavailable_s": None if window is None else round(window.duration_s, 4),
                "unavailable_window": None if window is None else window.to_dict(history.origin_ns),
                "lost_claims": len(lost),
                "old_primary_claims": None if old_state is None else len(old_state.claims),
                "survivor_claims": len(state.claims),
                **extra,
            }
        )
        verdicts = [
            no_lost_acknowledged_claims(history, state),
            lost_claims_on_old_primary(lost, old_state, state),
            Verdict(
                "failover_done",
                f.new_primary is not None,
                f"{f.old_primary} down, {f.new_primary} promoted in {f.promote_s:.3f}s"
                if f.promote_s is not None
                else "no standby was promoted",
            ),
            Verdict(
                "served_after_promotion",
                window is not None,
                f"unavailable {window.duration_s:.3f}s, first success after the promotion"
                if window is not None
                else "no success after the promotion",
            ),
        ]
        if rejoin and old is not None:
            verdicts.append(
                Verdict(
                    "old_primary_rejoined",
                    old.role == "standby",
                    f"{old.name} rewound and streaming from {f.new_primary} "
                    f"in {extra.get('rewind_s')}s"
                    if old.role == "standby"
                    else f"{old.name} is {old.role}",
                )
            )
        return verdicts

    result = fault_experiment(
        NAME,
        make_plan=lambda s, p: claim_stream_plan(
            s, p, workers=params["workers"], ops_per_worker=3000, coupons=4
        ),
        make_faults=faults,
        expect=expect,
        params=params,
        seed=common["seed"],
        layer=common["layer"],
        strategy=common["strategy"],
        database_url=cluster.url,
        op_timeout_s=common["op_timeout_s"],
        run_timeout_s=common["run_timeout_s"],
        fault_s=common["run_timeout_s"] / 2,
        after_s=1.0,
        # statement_timeout cannot bound a commit waiting for a synchronous standby
        # (PostgreSQL disables it before committing), and a cancel there ends the wait
        # with success for a commit only the primary has (measured with the link cut:
        # INSERT ok after pg's cancel, "canceling wait for synchronous replication"
        # a warning only, the row on the primary, not on the standby). Off: nothing
        # cancels, the claims in flight wait until the failover ends them.
        service_overrides={"pool_timeout": 1.0, "statement_timeout_ms": 0},
        # The circuit breaker refuses at once while no primary answers (~18,000 a second
        # in-process): a load that does not pause, as a client honouring a 503 would,
        # spends its whole plan before the promotion and never sees the new primary.
        backoff_s=0.05,
        through=through,
        faults_done=lambda: bool(nemeses) and nemeses[0].wait(0),
    )
    result.params["database_url"] = None
    if unsafe(cluster.mode):
        _as_findings(result)
    return result


def _configuration(mode: str, cut_link: bool, how: str) -> str:
    cut = "link cut before the kill" if cut_link else "link up"
    safety = "unsafe" if unsafe(mode) else "safe"
    return f"{mode} replication, {cut}, primary {'killed' if how == 'kill' else 'switched over'}: {safety}"


def _as_findings(result: Result) -> None:
    """An unsafe configuration: the loss is the expected finding, asserted as such.

    The checks the loss fails (named in ``_LOSS_CHECKS``) move to
    ``summary["findings"]`` with their own verdicts; in their place one check,
    ``loss_caught``, passes when every claim named lost was acknowledged by the old
    primary (a row there) and is absent from the new one.
    """
    failed = [v for v in result.verdicts if v.name in _LOSS_CHECKS and v.passed is not True]
    evidence = result.verdict("lost_claims_on_old_primary")
    lost = int(result.verdict("no_lost_acknowledged_claims").figures.get("lost_count", 0))
    result.summary["findings"] = {v.name: v.to_dict() for v in failed}
    result.summary["unsafe"] = True
    result.verdicts = [v for v in result.verdicts if v not in failed]
    explained = lost > 0 or not failed
    result.verdicts.append(
        Verdict(
            "loss_caught",
            evidence.passed is True and explained,
            f"expected finding: {lost} acknowledged claims lost, each a row of the old "
            f"primary and absent from the new; failed as they must: "
            f"{', '.join(v.name for v in failed) or 'none'}"
            if lost
            else "no acknowledged claim was lost this time",
            {"lost_count": lost, "findings": [v.name for v in failed]},
        )
    )


def _by_url(
    url: str,
    command: str | None,
    workers: int,
    delay_s: float,
    params: dict[str, Any],
    common: dict[str, Any],
) -> Result:
    """A cluster of the user's: their multi-host URL, their failover command as the fault."""
    if not command:
        seed = draw_seed(common["seed"])
        reason = "a cluster given by URL needs failover_command (the fault to run)"
        print(f"[{NAME}] skipped: {reason}", flush=True)
        return Result(
            scenario=NAME,
            seed=seed,
            layer=common["layer"],
            strategy=common["strategy"],
            params={**common_params(database_url=url, **{**common, "seed": seed}), **params},
            history=History(),
            verdicts=[Verdict("failover_command", None, f"skipped: {reason}")],
            summary={"skipped": reason},
        )
    commands: list[FailoverCommand] = []

    def faults(fr: FaultRun) -> list[Nemesis]:
        commands.append(FailoverCommand(command, delay_s=delay_s))
        return [commands[0]]

    def expect(history: History, state: FinalState, fr: FaultRun) -> list[Verdict]:
        c = commands[0]
        fr.figures.update({"failover_command_s": c.duration_s, "failover_command_rc": c.returncode})
        return [
            no_lost_acknowledged_claims(history, state),
            Verdict(
                "failover_command",
                c.error is None and c.returncode == 0,
                f"exit status {c.returncode} after {c.duration_s or 0:.3f}s"
                if c.error is None
                else f"could not run: {type(c.error).__name__}",
            ),
        ]

    return fault_experiment(
        NAME,
        make_plan=lambda s, p: claim_stream_plan(
            s, p, workers=workers, ops_per_worker=3000, coupons=4
        ),
        make_faults=faults,
        expect=expect,
        params=params,
        seed=common["seed"],
        layer=common["layer"],
        strategy=common["strategy"],
        database_url=url,
        op_timeout_s=common["op_timeout_s"],
        run_timeout_s=common["run_timeout_s"],
        fault_s=common["run_timeout_s"] / 2,
        after_s=2.0,
        service_overrides={"pool_timeout": 1.0, "statement_timeout_ms": 0},
        backoff_s=0.05,
        faults_done=lambda: bool(commands) and commands[0].wait(0),
    )
