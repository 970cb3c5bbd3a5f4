"""stale_reads: reads served by a standby whose replication lags behind the primary."""

from __future__ import annotations

from typing import Any

from coupon_core.cluster import MODES
from experiments.checks import FinalState, Shared
from experiments.faults.loads import claim_stream_plan
from experiments.faults.replication import ReplicationLag, ReplicationLinks
from experiments.findings import scope, without
from experiments.history import History
from experiments.linearizability import (
    CHECK_NAME,
    LINEARIZABLE_TIME_LIMIT_S,
    check_linearizable,
    started_ops,
)
from experiments.pipeline import Nemesis, Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.replica_checks import stale_reads, stale_reads_observed
from experiments.result import Result, Verdict
from experiments.scenarios._replicated import link_through
from experiments.spec import Range, RunSpec, SpecError

NAME = "stale_reads"
TITLE = "Stale reads from a lagging standby"
DESCRIPTION = (
    "6 workers claim and read on a primary with one streaming standby whose WAL "
    "arrives lag_s late (the lab's proxy on the replication link); gets go to the "
    "standby (read_from='standby', the service's read URL) or to the primary. The "
    "lab proves stale reads by counting (a read missing a claim acknowledged before "
    "it began) and the linearizability check must flag every run that had one, with "
    "a two-op witness; reads on the primary stay linearizable. With mode="
    "'remote_apply' a claim is acknowledged only once the standby applied it: a safe "
    "configuration, where a stale read is no finding but fails the run."
)
DEFAULTS: dict[str, Any] = {
    "mode": "async",
    "read_from": "standby",
    "lag_s": 0.2,
    "workers": 6,
    "ops_per_worker": 30,
    "get_ratio": 0.5,
    "coupons": 3,
    "stock": 100_000,
}
#: The shared checks it gets, and its own (``experiments.checks.registry``).
SHARED: Shared = "faults"
CHECKS: tuple[str, ...] = (
    "stale_reads",
    "stale_reads_caught",
)
_READS_CHECKS = ("stale_reads", CHECK_NAME)


COMMON: dict[str, Any] = {"op_timeout_s": 5.0, "run_timeout_s": 30.0}
RANGES: dict[str, Range] = {"lag_s": Range(0, 10, "the replication link's delay, in seconds")}


def run(spec: RunSpec) -> Result:
    mode, read_from, lag_s = str(spec["mode"]), str(spec["read_from"]), float(spec["lag_s"])
    workers, ops_per_worker = int(spec["workers"]), int(spec["ops_per_worker"])
    get_ratio, coupons, stock = float(spec["get_ratio"]), int(spec["coupons"]), int(spec["stock"])
    if mode not in MODES:
        raise SpecError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if read_from not in ("standby", "primary"):
        raise SpecError(f"read_from must be 'standby' or 'primary', not {read_from!r}")
    if spec.database_url is not None:
        raise SpecError("stale_reads runs on a replicated cluster of its own: leave database_url")
    links: list[ReplicationLinks] = []

    through = link_through(links)

    def faults(fr: Run) -> list[Nemesis]:
        # Lagging from the first op of the load to the last (the setup is replicated).
        return [ReplicationLag(links[0], lag_s)] if lag_s > 0 else []

    def expect(history: History, state: FinalState, fr: Run) -> list[Verdict]:
        fr.figures.update(
            {
                "configuration": f"{mode} replication, WAL {lag_s}s late, reads on the {read_from}",
                "read_url": "standby" if read_from == "standby" else "primary",
            }
        )
        # The amounts each coupon was created with: the plan's, never the final table's.
        return [stale_reads_observed(history, dict(fr.plan.setup))]

    return run_pipeline(
        spec,
        Workload(
            checks=SHARED,
            make_plan=lambda s, p: claim_stream_plan(
                s,
                p,
                workers=workers,
                ops_per_worker=ops_per_worker,
                coupons=coupons,
                stock=stock,
                get_ratio=get_ratio,
            ),
            faults=faults,
            expect=expect,
            fault_s=spec.run_timeout_s,
            after_s=0.0,
            service_overrides={"pool_timeout": 2.0, "statement_timeout_ms": 0},
            database="cluster",
            cluster_mode=mode,
            through=through,
            read_from_standby=read_from == "standby",
            judge=lambda r, verdicts: _judge(r, verdicts, mode, read_from, lag_s),
        ),
    )


def unsafe(mode: str, read_from: str) -> bool:
    """Reads on a standby may be stale unless a commit waits for the standby to apply it
    (``remote_apply``); reads on the primary never are."""
    return read_from == "standby" and mode != "remote_apply"


def _judge(
    r: Run, verdicts: list[Verdict], mode: str, read_from: str, lag_s: float
) -> list[Verdict]:
    kept, figures = judge_reads(r.history, dict(r.plan.setup), verdicts, mode, read_from, lag_s)
    r.figures.update(figures)
    return kept


def judge_reads(
    history: History,
    amounts: dict[str, int],
    verdicts: list[Verdict],
    mode: str,
    read_from: str,
    lag_s: float,
) -> tuple[list[Verdict], dict[str, Any]]:
    """The verdicts of a run, and its figures (the findings among them).

    Reads on a standby that may lag (``unsafe``): stale reads are a finding, and the
    lab must catch each run's.
    The finding's evidence is the stale reads themselves (``stale_reads``'s witness
    ops). ``linearizable`` is excused only when, with those reads taken out, the
    history is linearizable again; any other failure, and any unknown, stands.
    ``stale_reads_caught`` passes when the linearizability check flagged every run in
    which stale reads occurred. A safe configuration (reads on the primary, or on a
    standby under ``remote_apply``) keeps every check as it is: a stale read fails it.
    ``amounts`` are what each coupon was created with: the plan's.
    """
    stale = next(v for v in verdicts if v.name == "stale_reads")
    lin = next(v for v in verdicts if v.name == CHECK_NAME)
    observed = int(stale.figures.get("stale", 0))
    stale_ids = {s["read_op_id"] for s in stale_reads(history, amounts)}
    figures: dict[str, Any] = {
        "stale_reads": observed,
        "witness_op_ids": stale.figures.get("witness_op_ids", []),
        "linearizable": lin.passed,
    }
    caught = observed == 0 or lin.passed is False
    verdicts = [
        *verdicts,
        Verdict(
            "stale_reads_caught",
            caught,
            f"{observed} stale reads, and the linearizability check flagged them: {lin.detail}"
            if observed and caught
            else (
                "no stale read occurred"
                if not observed
                else f"{observed} stale reads, yet the linearizability check said {lin.label}"
            ),
            {"stale": observed, "linearizable": lin.passed},
        ),
    ]
    if not unsafe(mode, read_from):
        return verdicts, figures
    evidence = [o for o in history.ops if o.op_id in stale_ids]
    reads_out = without(history, evidence, "drop")
    kept, findings = scope(
        verdicts,
        finding=f"a standby {lag_s}s behind served {len(evidence)} stale reads",
        evidence_check="stale_reads",
        evidence=evidence,
        rechecks={
            CHECK_NAME: lambda: check_linearizable(
                started_ops(reads_out), LINEARIZABLE_TIME_LIMIT_S
            )
        },
    )
    figures["findings"] = findings
    return kept, figures
