"""stale_reads: reads served by a standby whose replication lags behind the primary."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from coupon_core.cluster import MODES
from coupon_core.database import replicated
from experiments.checks import FinalState
from experiments.faults.experiment import FaultRun, Nemesis, fault_experiment
from experiments.faults.loads import claim_stream_plan
from experiments.faults.replication import ReplicationLag, ReplicationLinks
from experiments.history import History
from experiments.linearizability import CHECK_NAME
from experiments.result import Result, Verdict

NAME = "stale_reads"
TITLE = "Stale reads from a lagging standby"
DESCRIPTION = (
    "6 workers claim and read on a primary with one streaming standby whose WAL "
    "arrives lag_s late (the lab's proxy on the replication link); gets go to the "
    "standby (read_from='standby', the service's read URL) or to the primary. The "
    "lab proves stale reads by counting (a read missing a claim acknowledged before "
    "it began) and the linearizability check must flag every run that had one, with "
    "a two-op witness; reads on the primary stay linearizable. With mode="
    "'remote_apply' a claim is acknowledged only once the standby applied it."
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
_READS_CHECKS = ("stale_reads", CHECK_NAME)


def run(
    *,
    seed: int | None = None,
    layer: str = "service",
    strategy: str = "row_lock",
    database_url: str | None = None,
    op_timeout_s: float = 5.0,
    run_timeout_s: float = 30.0,
    mode: str = "async",
    read_from: str = "standby",
    lag_s: float = 0.2,
    workers: int = 6,
    ops_per_worker: int = 30,
    get_ratio: float = 0.5,
    coupons: int = 3,
    stock: int = 100_000,
) -> Result:
    from experiments.replica_checks import stale_reads_observed

    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
    if read_from not in ("standby", "primary"):
        raise ValueError(f"read_from must be 'standby' or 'primary', not {read_from!r}")
    if lag_s < 0 or lag_s > 5:
        raise ValueError(f"lag_s must be between 0 and 5 seconds, not {lag_s!r}")
    if database_url is not None:
        raise ValueError("stale_reads runs on a replicated cluster of its own: leave database_url")
    params: dict[str, Any] = {
        "mode": mode,
        "read_from": read_from,
        "lag_s": lag_s,
        "workers": workers,
        "ops_per_worker": ops_per_worker,
        "get_ratio": get_ratio,
        "coupons": coupons,
        "stock": stock,
    }
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        cluster = replicated(standbys=1, mode=mode)
        stack.callback(cluster.close)
        setup_s = time.monotonic() - t0
        standby = cluster.standby_nodes()[0]
        links: list[ReplicationLinks] = []

        def through(url: str) -> tuple[str, Nemesis]:
            # The replication link runs through the lab's proxy; the service's URL is unchanged.
            link = ReplicationLinks(cluster, seed=seed or 0).start()
            links.append(link)
            return url, link

        def faults(fr: FaultRun) -> list[Nemesis]:
            # Lagging from the first op of the load to the last (the setup is replicated).
            return [ReplicationLag(links[0], lag_s)] if lag_s > 0 else []

        def expect(history: History, state: FinalState, fr: FaultRun) -> list[Verdict]:
            amounts = {name: amount for name, (amount, _) in state.coupons.items()}
            fr.figures.update(
                {
                    "configuration": f"{mode} replication, WAL {lag_s}s late, reads on the "
                    f"{read_from}",
                    "read_url": "standby" if read_from == "standby" else "primary",
                }
            )
            return [stale_reads_observed(history, amounts)]

        result = fault_experiment(
            NAME,
            make_plan=lambda s, p: claim_stream_plan(
                s,
                p,
                workers=workers,
                ops_per_worker=ops_per_worker,
                coupons=coupons,
                stock=stock,
                get_ratio=get_ratio,
            ),
            make_faults=faults,
            expect=expect,
            params=params,
            seed=seed,
            layer=layer,
            strategy=strategy,
            database_url=cluster.url,
            op_timeout_s=op_timeout_s,
            run_timeout_s=run_timeout_s,
            fault_s=run_timeout_s,
            after_s=0.0,
            service_overrides={"pool_timeout": 2.0, "statement_timeout_ms": 0},
            through=through,
            read_url=standby.url if read_from == "standby" else None,
        )
    result.params["database_url"] = None
    result.summary["cluster_setup_s"] = round(setup_s, 3)
    _judge(result, read_from)
    result.duration_s = time.monotonic() - t0
    return result


def _judge(result: Result, read_from: str) -> None:
    """Reads on a standby: stale reads are a finding, and the lab must catch each run's.

    ``stale_reads`` (the proof by counting) and ``linearizable`` move to
    ``summary["findings"]`` when they fail; ``stale_reads_caught`` passes when the
    linearizability check flagged every run in which stale reads occurred. Reads on
    the primary keep both checks as they are: they must pass.
    """
    stale = result.verdict("stale_reads")
    lin = result.verdict(CHECK_NAME)
    observed = int(stale.figures.get("stale", 0))
    result.summary["stale_reads"] = observed
    result.summary["witness_op_ids"] = stale.figures.get("witness_op_ids", [])
    result.summary["linearizable"] = lin.passed
    caught = observed == 0 or lin.passed is False
    result.verdicts.append(
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
        )
    )
    if read_from != "standby":
        return
    failed = [v for v in result.verdicts if v.name in _READS_CHECKS and v.passed is not True]
    result.summary["findings"] = {v.name: v.to_dict() for v in failed}
    result.verdicts = [v for v in result.verdicts if v not in failed]
