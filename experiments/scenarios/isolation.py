"""isolation: Hermitage's matrix on the coupon domain, judged by the Elle-style checker.

The matrix (``CELLS``) is workload x implementation x PostgreSQL isolation level:

- ``campaign`` (write skew): one user claims every coupon of a campaign at once, round
  after round, under each campaign implementation (``coupon_core.campaigns``: naive
  check-then-insert, an advisory lock, the database constraint);
- ``dashboard`` (read skew): writers claim bundles of coupons (all or none, one
  transaction) while dashboards read the coupons together, as one statement
  (``snapshot``) or statement by statement in one transaction (``per_statement``).

Each cell runs ``seeds`` times, each time one run of the pipeline (``pipeline.run``)
with the cell's service (its implementation and level) and a seed of its own. A run's
history of transactions, with the final tables read as a last one, goes to
``experiments.elle.check_history`` under the level's model (what PostgreSQL promises
there: READ COMMITTED forbids G0/G1, REPEATABLE READ also G-single, SERIALIZABLE every
cycle), beside the tables' invariants, the acknowledged writes against the rows, and
the multi-row contract; a run whose workload did not overlap its operations tested
nothing (``multirow_collided``, validity) and is drawn again by the pipeline.

A cell's verdict (named ``<workload>/<implementation>/<isolation>``): every run's
checks held, and then, where the cell expects no anomaly (``expected`` says which
cells do), no seed showed any; where it expects one (allowed at that level and not
prevented by the implementation), it is a finding: shown in at least ``min_share`` of
the seeds, its witness cycle named; shown less is a FAIL (the lab did not catch it).
``summary["anomalies"]`` maps each cell to ``{anomaly class: seeds that showed it}``.

``bundle_claim`` and ``dashboard_read`` name the bundle claim and the read that stand
for ``per_statement`` (the lab's mutants plant themselves there: ``experiments.mutants``;
the detection matrix's plants: tests/experiments/test_isolation_plants.py).

``cells`` (default ``all``) runs only the cells named (comma-separated): the others'
verdicts are skipped, so the matrix is not claimed, and the notebook's assert that every
cell has its figures fails. It is for measuring one cell over many seeds.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from experiments.checks import (
    FinalState,
    conservation,
    no_negative_stock,
    no_orphan_claims,
    one_claim_per_user,
)
from experiments.elle import (
    Door,
    HttpDoor,
    Recorder,
    ServiceDoor,
    bundle_txn,
    campaign_txn,
    check_history,
    final_reads,
    hold_key,
    read_txn,
)
from experiments.history import History
from experiments.lab import Lab, LabError
from experiments.pipeline import Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.plans import Plan, draw_seed
from experiments.result import Attempt, Result, Verdict
from experiments.runner import RunReport
from experiments.spec import Range, RunSpec, SpecError

NAME = "isolation"
TITLE = "Isolation anomalies (Hermitage's matrix, Elle's checker)"
DESCRIPTION = (
    "Write skew on a campaign (one user claims every coupon of it at once; naive "
    "check-then-insert, advisory lock, constraint) and read skew on a dashboard (bundles "
    "claimed while coupons are read as one statement or statement by statement), at READ "
    "COMMITTED, REPEATABLE READ and SERIALIZABLE, over seeds; each run's transactions "
    "checked for dependency cycles (G0, G1a-c, G-single, G2-item). Expected: write skew "
    "under naive at RC and RR and under the lock at RR, read skew under per_statement at "
    "RC (findings, shown in most seeds); no anomaly anywhere else."
)
DEFAULTS: dict[str, Any] = {
    "seeds": 3,
    "rounds": 6,
    "coupons": 3,
    "bundles": 10,
    "writers": 2,
    "readers": 2,
    "min_share": 0.6,
    "bundle_claim": "one_transaction",
    "dashboard_read": "per_statement",
    "cells": "all",
}
RANGES: dict[str, Range] = {
    "seeds": Range(1, 50, "pipeline runs per cell; 15 cells"),
    "rounds": Range(1, 200, "users per campaign run, each claiming every coupon at once"),
    "coupons": Range(2, 10, "coupons of the campaign, and of each bundle"),
    "bundles": Range(1, 500, "bundles each writer claims per run"),
    "writers": Range(1, 16, "bundle writers, each a thread of the lab's process"),
    "readers": Range(1, 16, "dashboard readers, each a thread of the lab's process"),
    "min_share": Range(0, 1, "share of seeds an expected anomaly must show in"),
}
# It configures the service it runs on (implementation, level): a target cannot.
NEEDS = ("server", "database", "tables")
SHARED = "own"

LEVELS: tuple[str, ...] = ("read_committed", "repeatable_read", "serializable")
#: What PostgreSQL promises at each level, as the checker's model (Hermitage).
MODEL: dict[str, Any] = {
    "read_committed": "read-committed",
    "repeatable_read": "snapshot-isolation",
    "serializable": "serializable",
}
WORKLOADS: dict[str, tuple[str, ...]] = {
    "campaign": ("naive", "lock", "constraint"),
    "dashboard": ("snapshot", "per_statement"),
}


def expected(workload: str, implementation: str, isolation: str) -> str | None:
    """The anomaly a cell must show (a finding), or None: none may show.

    Write skew (G2-item) is allowed at READ COMMITTED and REPEATABLE READ; the naive
    check does nothing against it, the advisory lock only where each statement reads
    after it (READ COMMITTED: at REPEATABLE READ the snapshot predates the lock), the
    constraint at every level. Read skew (G-single) is allowed at READ COMMITTED only,
    and only the statement-by-statement read can show it.
    """
    if workload == "campaign":
        if implementation == "naive" and isolation != "serializable":
            return "G2-item"
        if implementation == "lock" and isolation == "repeatable_read":
            return "G2-item"
        return None
    if implementation == "per_statement" and isolation == "read_committed":
        return "G-single"
    return None


@dataclass(frozen=True)
class Cell:
    workload: str
    implementation: str
    isolation: str

    @property
    def name(self) -> str:
        return f"{self.workload}/{self.implementation}/{self.isolation}"

    @property
    def expect(self) -> str | None:
        return expected(self.workload, self.implementation, self.isolation)


CELLS: tuple[Cell, ...] = tuple(
    Cell(w, i, level) for w, impls in WORKLOADS.items() for i in impls for level in LEVELS
)
#: One verdict per cell.
CHECKS: tuple[str, ...] = tuple(c.name for c in CELLS)
#: The checks of each run of a cell (its own Result's; the cell's verdict reads them).
RUN_CHECKS: tuple[str, ...] = (
    "conservation",
    "one_claim_per_user",
    "no_orphan_claims",
    "no_negative_stock",
    "multirow_contract",
    "writes_as_acknowledged",
    "elle",
    "no_leaks",
    "multirow_collided",
)


def need(seeds: int, min_share: float) -> int:
    """Seeds an expected anomaly must show in: at least one, at least ``min_share``."""
    return max(1, math.ceil(min_share * seeds - 1e-9))


def chosen(cells: object) -> tuple[Cell, ...]:
    """The cells ``cells`` names: ``all``, or cell names separated by commas."""
    if not isinstance(cells, str) or not cells.strip():
        raise SpecError(f"cells must be 'all' or cell names separated by commas, not {cells!r}")
    if cells.strip() == "all":
        return CELLS
    names = [c.strip() for c in cells.split(",")]
    unknown = [n for n in names if n not in CHECKS]
    if unknown:
        raise SpecError(f"cells: no cell named {unknown[0]!r}; have {', '.join(CHECKS)}")
    return tuple(c for c in CELLS if c.name in names)


def count_runs(spec: RunSpec) -> int:
    """Pipeline runs of ``spec``: one per chosen cell and seed (the notebook's time bound)."""
    return len(chosen(spec["cells"])) * int(spec["seeds"])


def run(spec: RunSpec) -> Result:
    for key in ("bundle_claim", "dashboard_read"):
        if not isinstance(spec[key], str) or not spec[key]:
            raise SpecError(f"{key} must name a registered variant, not {spec[key]!r}")
    cells = chosen(spec["cells"])
    base = draw_seed(spec.seed)
    seeds = [base + i for i in range(int(spec["seeds"]))]
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    t0 = time.monotonic()
    runs: dict[str, list[Result]] = {}
    for cell in cells:
        runs[cell.name] = [
            run_pipeline(spec.replace(seed=s), _workload(spec, cell), name=NAME) for s in seeds
        ]
    share = float(spec["min_share"])
    verdicts = [
        judge_cell(cell, runs[cell.name], need(len(seeds), share))
        if cell in cells
        else Verdict.skip(cell.name, f"not among cells={spec['cells']}")
        for cell in CELLS
    ]
    summary = summarize(runs, seeds)
    result = Result(
        scenario=NAME,
        seed=base,
        layer=spec.layer,
        strategy=spec.strategy,
        params={**spec.common(), "seed": base, **dict(spec.params)},
        history=History(),
        verdicts=verdicts,
        summary=summary,
        started_at=started_at,
    )
    result.attempts = [Attempt(1, "", list(verdicts))]
    result.duration_s = time.monotonic() - t0
    return result


# -- one run of one cell -------------------------------------------------------------------


@dataclass
class _Box:
    """What the drive leaves for the checks (one attempt's)."""

    recorder: Recorder = field(default_factory=Recorder)
    coupons: list[str] = field(default_factory=list)
    users: list[str] = field(default_factory=list)
    #: Campaign: per round, the txn ids of its claims; dashboard: bundle and read ids.
    groups: list[list[int]] = field(default_factory=list)
    bundles: list[int] = field(default_factory=list)
    reads: list[int] = field(default_factory=list)

    def reset(self) -> None:
        """Empty, for another attempt of the run."""
        self.recorder = Recorder()
        self.coupons, self.users, self.groups, self.bundles, self.reads = [], [], [], [], []


def _overrides(spec: RunSpec, cell: Cell) -> dict[str, Any]:
    if cell.workload == "campaign":
        return {"campaign_strategy": cell.implementation, "isolation": cell.isolation}
    read = spec["dashboard_read"] if cell.implementation == "per_statement" else "snapshot"
    return {
        "multi_read": read,
        "isolation": cell.isolation,
        "bundle_claim": spec["bundle_claim"],
    }


def _workload(spec: RunSpec, cell: Cell) -> Workload:
    box = _Box()
    k = int(spec["coupons"])
    campaign = cell.workload == "campaign"
    workers = k if campaign else int(spec["writers"]) + int(spec["readers"])
    stock = int(spec["rounds"]) + 1 if campaign else int(spec["writers"]) * int(spec["bundles"]) + 1

    def make_plan(seed: int, prefix: str) -> Plan:
        coupons = tuple((f"{prefix}-c{i}", stock) for i in range(k))
        # Campaign coupons are created by the drive (with their campaign): no setup.
        return Plan(seed, prefix, workers, (), setup=() if campaign else coupons, shape="isolation")

    def drive(r: Run) -> RunReport:
        box.reset()
        drive_fn = _drive_campaign if campaign else _drive_dashboard
        return drive_fn(r, spec, box, stock)

    def expect(history: History, state: FinalState, r: Run) -> list[Verdict]:
        return _run_checks(cell, box, state)

    return Workload(
        make_plan=make_plan,
        expect=expect,
        checks="own",
        drive=drive,
        service_overrides=_overrides(spec, cell),
        validity=lambda r: [_collided(cell, box)],
        summary=lambda r: {
            "cell": cell.name,
            "txns": len(box.recorder.txns),
            "problems": box.recorder.problems[:10],
        },
    )


def _doors(lab: Lab, n: int) -> list[Door]:
    if lab.layer == "service":
        return [ServiceDoor(lab.service) for _ in range(n)]
    url = lab.target or (lab.server.url if lab.server is not None else None)
    if url is None:
        raise LabError("the HTTP layer without a server URL")
    return [HttpDoor(url, timeout_s=lab.op_timeout_s) for _ in range(n)]


def _now() -> int:
    return time.monotonic_ns()


def _threads(
    n: int, work: Callable[[int, threading.Barrier], None], timeout_s: float
) -> tuple[float, float | None]:
    """Run ``work(i, barrier)`` on ``n`` threads; (wall seconds, start spread ms)."""
    barrier = threading.Barrier(n, timeout=timeout_s)
    firsts: dict[int, int] = {}
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            firsts[i] = _now()
            work(i, barrier)
        except BaseException as err:  # surfaced below: a worker's crash is the lab's
            errors.append(err)
            barrier.abort()

    started = time.monotonic()
    threads = [threading.Thread(target=body, args=(i,), name=f"isolation-{i}") for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout_s * 4)
    if any(t.is_alive() for t in threads):
        raise LabError("an isolation worker did not finish")
    if errors:
        raise LabError(f"an isolation worker failed: {errors[0]!r}") from errors[0]
    spread = (max(firsts.values()) - min(firsts.values())) / 1e6 if firsts else None
    return time.monotonic() - started, spread


def _drive_campaign(r: Run, spec: RunSpec, box: _Box, stock: int) -> RunReport:
    """Round after round, one user claims every coupon of the campaign at once."""
    rounds, k = int(spec["rounds"]), int(spec["coupons"])
    coupons = [f"{r.prefix}-c{i}" for i in range(k)]
    box.coupons = coupons
    box.users = [f"u{i}" for i in range(rounds)]
    keys = [_short(r.prefix, c) for c in coupons]
    doors = _doors(r.lab, k)
    try:
        for name in coupons:
            done = doors[0].create(name, stock, f"{r.prefix}-campaign")
            if done.outcome != "ok":
                raise LabError(f"setup: create {name} ended {done.kind}: {done.problem}")
        box.groups = [[] for _ in range(rounds)]
        lock = threading.Lock()
        deadline = time.monotonic() + r.budget_s
        late = threading.Event()

        def work(i: int, barrier: threading.Barrier) -> None:
            for rnd, user in enumerate(box.users):
                barrier.wait()
                if time.monotonic() > deadline:
                    late.set()
                    return
                tid = box.recorder.next_id()
                t0 = _now()
                done = doors[i].claim(user, coupons[i])
                txn = campaign_txn(tid, user, keys[i], keys, done, i, (t0, _now()))
                box.recorder.add(txn, {"op": "claim", "user": user, "coupons": [coupons[i]]}, done)
                with lock:
                    box.groups[rnd].append(tid)

        wall, spread = _threads(k, work, r.spec.op_timeout_s * 2 + 5)
    finally:
        for d in doors:
            d.close()
    ran = len(box.recorder.txns)
    return RunReport(k, rounds * k, ran, rounds * k - ran, wall, spread, late.is_set())


def _drive_dashboard(r: Run, spec: RunSpec, box: _Box, stock: int) -> RunReport:
    """Writers claim bundles of every coupon; readers read them all, until the writers end."""
    writers, readers = int(spec["writers"]), int(spec["readers"])
    bundles, k = int(spec["bundles"]), int(spec["coupons"])
    coupons = [name for name, _ in r.plan.setup]
    box.coupons = coupons
    rng = random.Random(r.seed)
    # The seed decides each bundle's and each read's order of coupons (a bundle locks in
    # name order whatever it is given; a statement-by-statement read goes as asked).
    orders = [rng.sample(coupons, k) for _ in range((writers + readers) * (bundles * 4 + 1))]
    doors = _doors(r.lab, writers + readers)
    left = [writers]  # writers still writing (under ``lock``)
    lock = threading.Lock()
    deadline = time.monotonic() + r.budget_s
    late = threading.Event()
    max_reads = bundles * 4

    def work(i: int, barrier: threading.Barrier) -> None:
        barrier.wait()
        if i < writers:
            for j in range(bundles):
                if time.monotonic() > deadline:
                    late.set()
                    break
                user = f"w{i}-{j}"
                order = orders[i * max_reads + j]
                tid = box.recorder.next_id()
                t0 = _now()
                done = doors[i].claim_bundle(user, order)
                txn = bundle_txn(tid, user, _shorts(r.prefix, order), done, i, (t0, _now()))
                box.recorder.add(txn, {"op": "bundle", "user": user, "coupons": order}, done)
                with lock:
                    box.bundles.append(tid)
            with lock:
                left[0] -= 1
            return
        for j in range(max_reads):
            order = orders[i * max_reads + j]
            tid = box.recorder.next_id()
            t0 = _now()
            done = doors[i].read_many(order)
            if done.outcome == "ok" and set(done.value or {}) != set(order):
                # Every coupon asked for exists: an answer without one is wrong.
                seen = sorted(done.value or {})
                done = replace(done, problem=f"read of {order} answered {seen}")
            value = (
                None
                if done.value is None
                else {_short(r.prefix, c): v for c, v in done.value.items()}
            )
            txn = read_txn(
                tid, _shorts(r.prefix, order), replace(done, value=value), i, (t0, _now())
            )
            box.recorder.add(txn, {"op": "read", "coupons": order}, done)
            with lock:
                box.reads.append(tid)
                ended = left[0] == 0
            if ended or time.monotonic() > deadline:
                break

    try:
        wall, spread = _threads(writers + readers, work, r.spec.op_timeout_s * 2 + 5)
    finally:
        for d in doors:
            d.close()
    planned = writers * bundles
    ran = len(box.bundles)
    return RunReport(writers + readers, planned, ran, planned - ran, wall, spread, late.is_set())


# -- the checks of one run -----------------------------------------------------------------


def _short(prefix: str, coupon: str) -> str:
    """A coupon's key in the checker's history: its name without the run's prefix."""
    return coupon[len(prefix) + 1 :] if coupon.startswith(prefix + "-") else coupon


def _shorts(prefix: str, coupons: Sequence[str]) -> list[str]:
    return [_short(prefix, c) for c in coupons]


def _final(box: _Box, state: FinalState, campaign: bool) -> dict[Any, tuple[str, ...]]:
    """The final tables as the checker's last read, keyed as the run's transactions."""
    keys = _shorts(state.prefix, box.coupons)
    if campaign:
        rows = {(_short(state.prefix, c), u) for _, u, c in state.claims}
        return {hold_key(c, u): (u,) if (c, u) in rows else () for u in box.users for c in keys}
    out: dict[Any, list[str]] = {c: [] for c in keys}
    for _, user, coupon in state.claims:  # in id order: claim order
        out.setdefault(_short(state.prefix, coupon), []).append(user)
    return {c: tuple(us) for c, us in out.items()}


def _run_checks(cell: Cell, box: _Box, state: FinalState) -> list[Verdict]:
    verdicts = [
        conservation(state),
        one_claim_per_user(state),
        no_orphan_claims(state),
        no_negative_stock(state),
    ]
    problems = box.recorder.problems
    verdicts.append(
        Verdict(
            "multirow_contract",
            not problems,
            "every answer within the multi-row contract"
            if not problems
            else f"{len(problems)} answer(s) outside the contract: {problems[0]}",
            {"problems": problems[:20]},
        )
    )
    verdicts.append(_writes_as_acknowledged(box, state))
    if state.unavailable is not None:
        verdicts.append(Verdict.skip("elle", state.unavailable))
        return verdicts
    txns = list(box.recorder.txns)
    final = final_reads(
        box.recorder.next_id(), _final(box, state, cell.workload == "campaign"), _now()
    )
    verdicts.append(check_history([*txns, final], model=MODEL[cell.isolation]))
    return verdicts


def _writes_as_acknowledged(box: _Box, state: FinalState) -> Verdict:
    """Every acknowledged claim's rows are there, none of a refused one's, and a bundle's
    rows are all there or none (whatever its answer)."""
    if state.unavailable is not None:
        return Verdict.skip("writes_as_acknowledged", state.unavailable)
    rows = {(u, c) for _, u, c in state.claims}
    wrong: list[str] = []
    for tid, op in box.recorder.ops.items():
        if op["op"] == "read":
            continue
        have = [(op["user"], c) in rows for c in op["coupons"]]
        if op["outcome"] == "ok" and not all(have):
            wrong.append(f"T{tid} {op['op']} by {op['user']} acknowledged, rows missing")
        elif op["outcome"] == "fail" and any(have):
            wrong.append(f"T{tid} {op['op']} by {op['user']} refused ({op['kind']}), rows there")
        elif any(have) and not all(have):
            wrong.append(f"T{tid} {op['op']} by {op['user']} half applied: {have}")
    return Verdict(
        "writes_as_acknowledged",
        not wrong,
        "every write's rows as its answer says" if not wrong else "; ".join(wrong[:3]),
        {"wrong": wrong[:20]},
    )


def _collided(cell: Cell, box: _Box) -> Verdict:
    """The workload overlapped what it must: a campaign round's claims all in flight at
    once (in at least half the rounds); a dashboard read beside a bundle (half the reads)."""
    by_id = {t.id: t for t in box.recorder.txns}
    if cell.workload == "campaign":
        groups = [[by_id[i] for i in g] for g in box.groups if g]
        hit = sum(
            1
            for g in groups
            if len(g) > 1 and max(t.invoke_ns for t in g) < min(t.complete_ns for t in g)
        )
        total, what = len(groups), "rounds with every claim in flight at once"
    else:
        spans = [(by_id[i].invoke_ns, by_id[i].complete_ns) for i in box.bundles]
        reads = [by_id[i] for i in box.reads]
        hit = sum(1 for t in reads if any(a < t.complete_ns and t.invoke_ns < b for a, b in spans))
        total, what = len(reads), "reads overlapping a bundle"
    ok = total > 0 and hit * 2 >= total
    return Verdict(
        "multirow_collided",
        ok,
        f"{hit} of {total} {what}",
        {"collided": hit, "of": total},
        validity=True,
    )


# -- a cell's verdict over its seeds ---------------------------------------------------------


def _elle(result: Result) -> Verdict | None:
    return next((v for v in result.verdicts if v.name == "elle"), None)


def shown(results: Sequence[Result]) -> dict[str, list[int]]:
    """Anomaly class -> the seeds whose run showed it."""
    out: dict[str, list[int]] = {}
    for res in results:
        v = _elle(res)
        for kind in v.figures.get("anomaly_types", []) if v is not None else []:
            out.setdefault(kind, []).append(res.seed)
    return out


def witness(results: Sequence[Result], anomaly: str) -> dict[str, Any] | None:
    """The first witness of ``anomaly`` among the runs, with its seed."""
    for res in results:
        v = _elle(res)
        cases = (v.figures.get("anomalies", {}) if v is not None else {}).get(anomaly, [])
        if cases:
            return {"seed": res.seed, **cases[0]}
    return None


def judge_cell(cell: Cell, results: Sequence[Result], need: int) -> Verdict:
    """See the module: every run's checks first; then the cell's expectation."""
    n = len(results)
    found = shown(results)
    figures: dict[str, Any] = {
        "expect": cell.expect or "none",
        "model": MODEL[cell.isolation],
        "seeds": [r.seed for r in results],
        "statuses": [r.status for r in results],
        "shown": {k: len(v) for k, v in sorted(found.items())},
        "shown_in_seeds": {k: v for k, v in sorted(found.items())},
        "need": need,
    }
    failed = [
        f"seed {r.seed}: {v.name}: {v.detail}"
        for r in results
        for v in r.verdicts
        if v.passed is False and not v.validity
    ]
    if failed:
        if found:  # the first class's witness, for the report
            figures["witness"] = witness(results, sorted(found)[0])
        return Verdict(cell.name, False, "; ".join(failed[:3]), {**figures, "failed": failed})
    undecided = [
        f"seed {r.seed}: {r.status}" + "".join(f"; {v.name}: {v.detail}" for v in r.failed)
        for r in results
        if r.status != "pass"
    ]
    if undecided:
        return Verdict(cell.name, None, "; ".join(undecided[:3]), figures)
    if cell.expect is None:
        if found:
            first = sorted(found)[0]
            figures["witness"] = witness(results, first)
            return Verdict(
                cell.name,
                False,
                f"expected no anomaly, {first} in {len(found[first])} of {n} seeds",
                figures,
            )
        return Verdict(cell.name, True, f"no anomaly in {n} of {n} seeds", figures)
    got = len(found.get(cell.expect, []))
    figures["witness"] = witness(results, cell.expect)
    if got < need:
        return Verdict(
            cell.name,
            False,
            f"expected {cell.expect} in at least {need} of {n} seeds, shown in {got}: not caught",
            figures,
        )
    w = figures["witness"]
    assert w is not None
    why = "; ".join(e["why"] for e in w.get("edges", []))
    return Verdict(
        cell.name,
        False,
        f"{cell.expect} in {got} of {n} seeds (allowed at {cell.isolation}); e.g. seed {w['seed']}: {why}",
        figures,
        finding=f"{cell.expect} caught in {got} of {n} seeds: cycle {w.get('cycle')}",
    )


def summarize(runs: dict[str, list[Result]], seeds: list[int]) -> dict[str, Any]:
    anomalies = {
        name: {k: len(v) for k, v in sorted(shown(rs).items())} for name, rs in runs.items()
    }
    return {
        "seeds": seeds,
        "anomalies": anomalies,
        "detection_rate": {
            name: {k: round(c / len(seeds), 3) for k, c in counts.items()}
            for name, counts in anomalies.items()
        },
        "expected": {c.name: c.expect or "none" for c in CELLS},
        "runs": sum(len(rs) for rs in runs.values()),
        "run_statuses": {name: [r.status for r in rs] for name, rs in runs.items()},
        "run_seconds": {name: round(sum(r.duration_s for r in rs), 3) for name, rs in runs.items()},
        "txns": {name: [r.summary.get("txns") for r in rs] for name, rs in runs.items()},
    }
