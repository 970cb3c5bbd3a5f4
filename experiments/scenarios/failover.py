"""failover: the primary of a replicated cluster is killed mid-load and a standby promoted."""

from __future__ import annotations

import contextlib
import time
from typing import Any

import psycopg

from coupon_core.cluster import MODES
from experiments.checks import FinalState, Shared, claims_match_history, read_state
from experiments.faults.loads import claim_stream_plan
from experiments.faults.replication import Failover, FailoverCommand, ReplicationLinks
from experiments.findings import scope, without
from experiments.history import History
from experiments.linearizability import (
    CHECK_NAME,
    LINEARIZABLE_TIME_LIMIT_S,
    check_linearizable,
    started_ops,
)
from experiments.pipeline import Nemesis, Run, Workload, skipped
from experiments.pipeline import run as run_pipeline
from experiments.replica_checks import (
    lost_acknowledged_claims,
    lost_claims_on_old_primary,
    no_lost_acknowledged_claims,
    unavailability,
)
from experiments.result import Result, Verdict
from experiments.scenarios._replicated import link_through
from experiments.spec import RunSpec, SpecError

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

SHARED: Shared = "faults"


#: Its own checks. On a cluster of its own, ``failover_command`` is skipped (no command:
#: the lab kills the primary); on the user's cluster by URL, the checks that need the
#: lab's own cluster (its old primary, its promotion) are skipped, each with the reason.
CHECKS: tuple[str, ...] = (
    "no_lost_acknowledged_claims",
    "lost_claims_on_old_primary",
    "failover_done",
    "served_after_promotion",
    "old_primary_rejoined",
    "loss_caught",
    "failover_command",
)
_CLUSTER_ONLY = CHECKS[1:6]


def unsafe(mode: str) -> bool:
    """Asynchronous replication may lose acknowledged commits; with a cut link it does."""
    return mode == "async"


COMMON: dict[str, Any] = {"op_timeout_s": 5.0, "run_timeout_s": 30.0}


def run(spec: RunSpec) -> Result:
    mode, how, cut_link = str(spec["mode"]), str(spec["how"]), bool(spec["cut_link"])
    if mode not in MODES:
        raise SpecError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if how not in ("kill", "switchover"):
        raise SpecError(f"how must be 'kill' or 'switchover', not {how!r}")
    command = spec["failover_command"]
    # A command may carry credentials: the Result records that there was one, not it.
    spec = spec.replace(params={**spec.params, "failover_command": "***" if command else None})
    if spec.database_url is not None:
        return _by_url(spec, command)
    nemeses: list[Failover] = []
    links: list[ReplicationLinks] = []
    extra: dict[str, Any] = {}
    rejoin = bool(spec["rejoin"])

    through = link_through(links)

    def faults(fr: Run) -> list[Nemesis]:
        assert fr.cluster is not None
        f = Failover(
            fr.cluster,
            links[0],
            how="kill" if how == "kill" else "switchover",
            delay_s=float(spec["delay_s"]),
            cut_before_s=float(spec["cut_s"]) if cut_link else None,
            detect_s=float(spec["detect_s"]),
        )
        nemeses.append(f)
        return [f]

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        cluster = fr.cluster
        assert cluster is not None
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
        else:
            verdicts.append(
                Verdict.skip(
                    "old_primary_rejoined",
                    "rejoin=False" if not rejoin else "no old primary to rejoin",
                )
            )
        return verdicts

    return run_pipeline(
        spec,
        _workload(
            spec,
            faults=faults,
            expect=expect,
            after_s=1.0,
            cluster_standbys=int(spec["standbys"]),
            cluster_mode=mode,
            through=through,
            faults_done=lambda: bool(nemeses) and nemeses[0].wait(0),
            judge=_as_findings if unsafe(mode) else _safe,
        ),
    )


def _workload(spec: RunSpec, **differs: Any) -> Workload:
    """What both paths share (the lab's own cluster, and a cluster given by URL)."""
    return Workload(
        checks=SHARED,
        make_plan=lambda s, p: claim_stream_plan(
            s, p, workers=int(spec["workers"]), ops_per_worker=3000, coupons=4
        ),
        fault_s=spec.run_timeout_s / 2,
        # statement_timeout cannot bound a commit waiting for a synchronous standby
        # (PostgreSQL disables it before committing), and a cancel there ends the
        # wait with success for a commit only the primary has (measured with the
        # link cut: INSERT ok after pg's cancel, "canceling wait for synchronous
        # replication" a warning only, the row on the primary, not on the standby).
        # Off: nothing cancels, the claims in flight wait until the failover ends them.
        service_overrides={"pool_timeout": 1.0, "statement_timeout_ms": 0},
        # The circuit breaker refuses at once while no primary answers (~18,000 a
        # second in-process): a load that does not pause, as a client honouring a
        # 503 would, spends its whole plan before the promotion and never sees the
        # new primary.
        backoff_s=0.05,
        database="cluster",
        **differs,
    )


def _configuration(mode: str, cut_link: bool, how: str) -> str:
    cut = "link cut before the kill" if cut_link else "link up"
    safety = "unsafe" if unsafe(mode) else "safe"
    return f"{mode} replication, {cut}, primary {'killed' if how == 'kill' else 'switched over'}: {safety}"


def _as_findings(r: Run, verdicts: list[Verdict]) -> list[Verdict]:
    """An unsafe configuration: the loss is the expected finding (``judge_loss``)."""
    assert r.state is not None
    kept, findings = judge_loss(r.history, r.state, verdicts)
    r.figures["findings"] = findings
    r.figures["unsafe"] = True
    return kept


def judge_loss(
    history: History, state: FinalState, verdicts: list[Verdict]
) -> tuple[list[Verdict], dict[str, Any]]:
    """The verdicts of an unsafe configuration's run, and its findings by check name.

    The loss is the expected finding, and it excuses only what it explains
    (``findings.scope``: the explained failures are marked, not hidden). The evidence
    is the acknowledged claims the survivor lacks. ``claims_match_history`` and
    ``linearizable`` are excused only when, with those claims erased from the history
    (the claims, and their users in the reads that saw them), they pass; every other
    failure, and every unknown, stands. Beside them one check, ``loss_caught``, passes
    when every claim named lost was acknowledged by the old primary (a row there) and
    is absent from the new one.
    """
    lost = lost_acknowledged_claims(history, state)
    # The lost claims taken out, and their traces in the reads the old primary served.
    unsure = without(history, lost, "erase")
    kept, findings = scope(
        verdicts,
        finding=f"asynchronous replication lost {len(lost)} acknowledged claims",
        evidence_check="no_lost_acknowledged_claims",
        evidence=lost,
        rechecks={
            "claims_match_history": lambda: claims_match_history(unsure, state),
            CHECK_NAME: lambda: check_linearizable(started_ops(unsure), LINEARIZABLE_TIME_LIMIT_S),
        },
    )
    evidence = next(v for v in verdicts if v.name == "lost_claims_on_old_primary")
    return [
        *kept,
        Verdict(
            "loss_caught",
            evidence.passed is True,
            f"expected finding: {len(lost)} acknowledged claims lost, each a row of the old "
            f"primary and absent from the new; excused by it: "
            f"{', '.join(findings) or 'none'}"
            if lost
            else "no acknowledged claim was lost this time",
            {"lost_count": len(lost), "findings": sorted(findings)},
        ),
        _no_command(),
    ], findings


def _safe(r: Run, verdicts: list[Verdict]) -> list[Verdict]:
    """A safe configuration: no loss is expected, so no finding excuses one."""
    why = f"{r.cluster.mode if r.cluster else 'this'} replication is a safe configuration"
    return [
        *verdicts,
        Verdict.skip("loss_caught", f"{why}: every loss fails the run"),
        _no_command(),
    ]


def _no_command() -> Verdict:
    return Verdict.skip("failover_command", "the lab's own cluster: it kills the primary")


def _by_url(spec: RunSpec, command: str | None) -> Result:
    """A cluster of the user's: their multi-host URL, their failover command as the fault."""
    if not command:
        return skipped(
            spec,
            "a cluster given by URL needs failover_command (the fault to run)",
            check="failover_command",
        )
    commands: list[FailoverCommand] = []

    def faults(fr: Run) -> list[Nemesis]:
        commands.append(FailoverCommand(command, delay_s=float(spec["delay_s"])))
        return [commands[0]]

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        c = commands[0]
        fr.figures.update({"failover_command_s": c.duration_s, "failover_command_rc": c.returncode})
        why = "a cluster given by URL: the lab has no old primary or promotion of its own"
        return [
            no_lost_acknowledged_claims(history, state),
            *(Verdict.skip(name, why) for name in _CLUSTER_ONLY),
            Verdict(
                "failover_command",
                c.error is None and c.returncode == 0,
                f"exit status {c.returncode} after {c.duration_s or 0:.3f}s"
                if c.error is None
                else f"could not run: {type(c.error).__name__}",
            ),
        ]

    return run_pipeline(
        spec,
        _workload(
            spec,
            faults=faults,
            expect=expect,
            after_s=2.0,
            faults_done=lambda: bool(commands) and commands[0].wait(0),
        ),
    )
