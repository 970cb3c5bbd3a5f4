"""Replication sweep: failover and stale_reads per configuration over N seeds; the trade-off.

Usage: .venv/bin/python scripts/replication_sweep.py [-n 20] [--layer service]
       [--first-seed 1] [--budget-s 3600] [--chart docs/replication-tradeoff.png]

Configurations (each on a fresh replicated cluster per run):

    failover     async + cut link, sync + cut link, remote_apply + cut link
    stale_reads  async reads on the standby, async reads on the primary,
                 remote_apply reads on the standby

Prints per configuration: runs passed (the scenario's own checks, the expected
findings included), runs that lost acknowledged claims and how many in all, runs
where every loss was caught (named, and read back from the old primary), the
unavailability window (min/median/max), and for stale reads: runs with stale reads
(proved by counting), runs the linearizability check flagged, flagged without a
stale read. With ``--chart`` writes the trade-off chart. Exits 1 when any run failed.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from experiments.result import Result
from experiments.sweep import Tally, print_totals

CONFIGS: dict[str, tuple[str, dict[str, Any]]] = {
    "failover async+cut": ("failover", {"mode": "async", "cut_link": True}),
    "failover sync+cut": ("failover", {"mode": "sync", "cut_link": True}),
    "failover remote_apply+cut": ("failover", {"mode": "remote_apply", "cut_link": True}),
    "stale async standby": ("stale_reads", {"mode": "async", "read_from": "standby"}),
    "stale async primary": ("stale_reads", {"mode": "async", "read_from": "primary"}),
    "stale remote_apply standby": (
        "stale_reads",
        {"mode": "remote_apply", "read_from": "standby"},
    ),
}


@dataclass
class Cell(Tally):
    """One configuration's runs and the figures they measured."""

    lost_runs: int = 0
    lost_claims: int = 0
    caught_runs: int = 0
    acknowledged: int = 0
    unavailable_s: list[float] = field(default_factory=list)
    stale_runs: int = 0
    stale_reads: int = 0
    flagged_runs: int = 0
    flagged_without_stale: int = 0
    claims_per_s: list[float] = field(default_factory=list)


def _check(result: Result, name: str) -> dict[str, Any] | None:
    """A check's verdict, whether it stayed a verdict or moved to the findings."""
    for v in result.verdicts:
        if v.name == name:
            return v.to_dict()
    found: dict[str, Any] | None = result.summary.get("findings", {}).get(name)
    return found


def record(cell: Cell, result: Result) -> None:
    s = result.summary
    lost_check = _check(result, "no_lost_acknowledged_claims")
    if lost_check is not None:
        lost = int(lost_check["figures"].get("lost_count", 0))
        cell.acknowledged += int(lost_check["figures"].get("acknowledged", 0))
        evidence = _check(result, "lost_claims_on_old_primary")
        if lost:
            cell.lost_runs += 1
            cell.lost_claims += lost
            named = len(lost_check["figures"].get("lost_op_ids", []))
            if evidence is not None and evidence["passed"] is True and named == lost:
                cell.caught_runs += 1
        if s.get("unavailable_s") is not None:
            cell.unavailable_s.append(float(s["unavailable_s"]))
    if "stale_reads" in s:
        stale = int(s["stale_reads"])
        flagged = s.get("linearizable") is False
        cell.stale_runs += stale > 0
        cell.stale_reads += stale
        cell.flagged_runs += flagged
        cell.flagged_without_stale += flagged and not stale
    ok_claims = result.outcomes().get("claim", {}).get("ok", 0)
    wall = s.get("wall_s")
    if wall:
        cell.claims_per_s.append(ok_claims / float(wall))


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{min(values):.2f}/{statistics.median(values):.2f}/{max(values):.2f}"


def report(cells: dict[str, Cell]) -> None:
    print(
        f"\n{'configuration':<28} {'pass':>4} {'fail':>4} {'skip':>4} {'s/run':>6} "
        f"{'lost runs':>9} {'lost':>6} {'caught':>6} {'unavail s':>16} "
        f"{'stale runs':>10} {'flagged':>7} {'flag w/o stale':>14} {'claims/s':>8}"
    )
    for name, c in cells.items():
        is_failover = name.startswith("failover")
        print(
            f"{name:<28} {c.passed:>4} {c.failed:>4} {c.skipped:>4} {c.seconds_per_run:6.2f} "
            f"{c.lost_runs if is_failover else '-':>9} {c.lost_claims if is_failover else '-':>6} "
            f"{c.caught_runs if is_failover else '-':>6} {_spread(c.unavailable_s):>16} "
            f"{'-' if is_failover else c.stale_runs:>10} {'-' if is_failover else c.flagged_runs:>7} "
            f"{'-' if is_failover else c.flagged_without_stale:>14} "
            f"{statistics.median(c.claims_per_s) if c.claims_per_s else 0:8.0f}"
        )


def chart(cells: dict[str, Cell], path: Path) -> None:
    """Lost acknowledged claims against claims/s and unavailability, per failover mode."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    modes = [n for n in cells if n.startswith("failover")]
    labels = [n.removeprefix("failover ") for n in modes]
    fig, axes = plt.subplots(1, 3, figsize=(11, 3.4))
    runs = [max(cells[m].runs, 1) for m in modes]
    axes[0].bar(labels, [cells[m].lost_runs / r for m, r in zip(modes, runs, strict=True)])
    axes[0].set_title("runs losing acknowledged claims")
    axes[0].set_ylim(0, 1.05)
    axes[1].bar(
        labels, [statistics.median(cells[m].claims_per_s or [0]) for m in modes], color="tab:green"
    )
    axes[1].set_title("claims/s during the run (median)")
    axes[2].bar(
        labels,
        [statistics.median(cells[m].unavailable_s or [0]) for m in modes],
        color="tab:orange",
    )
    axes[2].set_title("unavailable s after the kill (median)")
    for ax in axes:
        ax.tick_params(axis="x", labelrotation=15)
    n = max(runs)
    fig.suptitle(f"Failover of a replicated PostgreSQL: what each mode costs ({n} seeds each)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-n", "--seeds", type=int, default=20, help="seeds per configuration")
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--layer", choices=("service", "http"), default="service")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated names")
    p.add_argument("--budget-s", type=float, default=3600.0, help="stop starting runs after this")
    p.add_argument("--chart", type=Path, default=None, help="write the trade-off chart here")
    args = p.parse_args(argv)
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(args.configs) - set(CONFIGS)
    if unknown:
        p.error(f"unknown configuration(s) {sorted(unknown)}; have {list(CONFIGS)}")
    if args.seeds < 1:
        p.error("--seeds must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    cells: dict[str, Cell] = {}
    t0 = time.monotonic()
    deadline = t0 + args.budget_s
    for seed in range(args.first_seed, args.first_seed + args.seeds):
        for name in args.configs:
            scenario, params = CONFIGS[name]
            cell = cells.setdefault(name, Cell())
            result = cell.run(scenario, seed, deadline=deadline, layer=args.layer, **params)
            if result is not None:
                record(cell, result)
        print(f"seed {seed} done ({time.monotonic() - t0:.0f}s)", flush=True)
    report(cells)
    if args.chart is not None:
        chart(cells, args.chart)
    return print_totals(cells, time.monotonic() - t0)


if __name__ == "__main__":
    sys.exit(main())
