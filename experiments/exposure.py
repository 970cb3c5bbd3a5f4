"""Exposure: a targeted stampede against one mutant, through the pipeline, until its bug shows.

Each attempt is one run of the pipeline (``pipeline.run``): a fresh coupon of the
mutant's stock, a stampede of users (or of one user's requests), a final read, and
every check the catalog runs plus ``symptoms`` (the bug's visible marks). A stampede
that did not collide is the pipeline's to draw again, with every attempt's verdicts
kept; here a run that passed is stampeded again (the race may not have shown), at
most ``attempts`` times, and any other status decides: FAIL (the bug shown, by
symptoms, linearizability or an invariant), unknown, or no_experiment.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from experiments.checks import FinalState
from experiments.history import History, Op
from experiments.linearizability import CHECK_NAME
from experiments.mutants import MUTANTS, Mutant, prepare
from experiments.pipeline import Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.plans import one_user_plan, stampede_plan
from experiments.result import Result, RunStatus, Verdict
from experiments.runner import RunReport, run_plan
from experiments.spec import RunSpec

__all__ = ["Exposure", "expose", "expose_all", "symptoms"]


@dataclass
class Exposure:
    """What targeted stampedes against one mutant showed: the deciding run and its figures."""

    mutant: str
    #: Runs of the pipeline it took (each may hold redraws of its own: ``result.attempts``).
    attempts: int
    symptoms: list[str]
    result: Result
    figures: dict[str, Any] = field(default_factory=dict)

    @property
    def history(self) -> History:
        return self.result.history

    @property
    def linearizable(self) -> Verdict:
        return self.result.verdict(CHECK_NAME)

    @property
    def status(self) -> RunStatus:
        return self.result.status

    @property
    def shown(self) -> bool:
        """The bug showed: the deciding run FAILed (by any check, not only ``symptoms``)."""
        return self.result.status == "FAIL"

    @property
    def evidence(self) -> list[str]:
        """What showed it: each failed check with its detail."""
        return [f"{v.name}: {v.detail}" for v in self.result.failed]


def symptoms(history: History, stock: int) -> list[str]:
    """The bug's visible marks in a one-coupon stampede history ending with a read."""
    claims = [o for o in history.ops if o.kind == "claim"]
    oks = [o for o in claims if o.result == "ok"]
    per_user: dict[str, int] = {}
    for o in oks:
        per_user[o.user or ""] = per_user.get(o.user or "", 0) + 1
    found: list[str] = []
    if len(oks) > stock:
        found.append(f"{len(oks)} successful claims on a stock of {stock}")
    found += [f"user {u} succeeded {k} times" for u, k in sorted(per_user.items()) if k > 1]
    final = next((o for o in reversed(history.ops) if o.kind == "get" and o.value), None)
    if final is None or final.value is None:
        return [*found, "no final read"]
    remaining = int(final.value["remaining_amount"])
    rows = list(final.value["claimed_by"])
    if remaining < 0:
        found.append(f"negative stock: {remaining}")
    if remaining != stock - len(rows):
        found.append(f"stock {remaining} but {len(rows)} claim rows of {stock}: a lost decrement")
    unsure = sum(1 for o in claims if o.outcome == "unknown")
    if not unsure and sorted(rows) != sorted(o.user or "" for o in oks):
        found.append(f"{len(rows)} claim rows for {len(oks)} successful claims")
    # A claim refused as unavailable with no fault injected (contention alone turned
    # away: a liveness bug) is the catalog's ``no_server_errors`` to judge, not restated.
    return found


def _workload(m: Mutant, users: int, requests: int) -> Workload:
    def make_plan(seed: int, prefix: str) -> Any:
        if m.stampede == "one_user":
            return one_user_plan(seed, prefix, stock=m.stock, requests=requests)
        return stampede_plan(seed, prefix, stock=m.stock, users=users)

    def drive(r: Run) -> RunReport:
        report = run_plan(
            r.plan,
            r.lab.client,
            r.history,
            phase="load",
            run_timeout_s=r.budget_s,
            op_timeout_s=r.spec.op_timeout_s,
        )
        # A final read: a lost decrement or an unpaid claim row is then in the history,
        # where the linearizability check can see it.
        coupon = r.plan.setup[0][0]
        r.lab.client.invoke(Op(len(r.plan.ops) + 1, -1, "get", coupon, phase="final"), r.history)
        return report

    def expect(history: History, state: FinalState, r: Run) -> list[Verdict]:
        found = symptoms(history, m.stock)
        return [
            Verdict(
                "symptoms",
                not found,
                "; ".join(found) if found else "no symptom of the bug",
                {"symptoms": found},
            )
        ]

    return Workload(make_plan=make_plan, expect=expect, drive=drive)


def expose(
    m: Mutant,
    database_url: str,
    *,
    users: int = 30,
    requests: int = 20,
    attempts: int = 5,
    timeout_s: float = 10.0,
) -> Exposure:
    """Stampede ``m`` until its bug shows (see the module): at most ``attempts`` runs.

    Runs through a real ``CouponService`` with the mutant's strategy on its schema.
    """
    strategy, url = prepare(m, database_url)
    spec = RunSpec(
        scenario=f"mutant-{m.name}".replace("+", "-"),
        strategy=strategy,
        database_url=url,
        op_timeout_s=timeout_s,
        run_timeout_s=max(30.0, 3 * timeout_s),
        pool_max=max(users, requests),
        params={"mutant": m.name, "users": users, "requests": requests, "stock": m.stock},
    )
    workload = _workload(m, users, requests)
    result: Result | None = None
    k = 0
    while k < max(1, attempts):
        result = run_pipeline(spec.replace(seed=k + 1), workload)
        k += 1
        if result.status != "pass":
            break
    assert result is not None
    found = list(result.verdict("symptoms").figures.get("symptoms", []))
    return Exposure(
        mutant=m.name,
        attempts=k,
        symptoms=found,
        result=result,
        figures={
            "outcomes": result.history.counts(),
            "strategy": strategy,
            "schema": m.schema,
            "status": result.status,
            "failed": [v.name for v in result.failed],
            "redraws": len(result.attempts) - 1,
        },
    )


def expose_all(
    database_url: str, mutants: Sequence[Mutant] = MUTANTS, **kwargs: Any
) -> Iterator[Exposure]:
    """``expose`` each mutant in turn."""
    for m in mutants:
        yield expose(m, database_url, **kwargs)
