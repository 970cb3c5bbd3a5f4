"""Mutant sweep: is every mutant caught in 19 of 20 seeds, and no real strategy ever flagged?

Usage: .venv/bin/python scripts/mutant_sweep.py [-n 20] [--first-seed 1] [--attempts 10]
       [--scenarios a,b] [--mutants a,b] [--layer service] [--budget-s 1800]
       [--database-url URL] [--equivalents-all-seeds]

Per seed, each killable mutant runs the catalog's scenarios in order until one
catches it (``experiments.detection.run_cell``: a missed race is rerun up to
``--attempts`` times with its own seeds); each real strategy runs every scenario
once per seed, and any check that fails or cannot decide is a false alarm.
Equivalent mutants run every scenario on the first seed (every seed with
``--equivalents-all-seeds``) and must show nothing.

Prints per mutant: seeds caught / N, on the first attempt and with retries, and by
which scenarios and checks; per real strategy: false alarms / N seeds.
Exits 0 when the goal is met (every killable mutant caught at the first seed and in
at least ``--need`` of N seeds, default 19 of 20 scaled; no false alarm; no equivalent
mutant caught), 1 when it is missed, 2 when the time budget ran out first (the runs
not done are reported as not run, never as caught or passed).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from coupon_core.database import provisioned
from experiments import scenarios
from experiments.detection import Cell, controls, run_cell
from experiments.mutants import MUTANTS, Mutant, install


@dataclass
class Tally:
    """One row's outcome over the seeds."""

    seeds: int = 0
    caught: int = 0
    caught_first_attempt: int = 0
    by_scenario: Counter[str] = field(default_factory=Counter)
    by_check: Counter[str] = field(default_factory=Counter)
    bad: list[str] = field(default_factory=list)
    runs: int = 0
    seconds: float = 0.0
    first_seed_caught: bool | None = None


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("-n", "--seeds", type=int, default=20)
    p.add_argument("--first-seed", type=int, default=1)
    p.add_argument("--attempts", type=int, default=10, help="runs of a cell before a miss")
    p.add_argument("--scenarios", type=_csv, default=list(scenarios.CATALOG))
    p.add_argument("--mutants", type=_csv, default=[m.name for m in MUTANTS])
    p.add_argument("--no-controls", action="store_true", help="skip the real strategies")
    p.add_argument("--layer", default="service", choices=["service", "http"])
    p.add_argument("--need", type=int, default=None, help="seeds a mutant must be caught in")
    p.add_argument("--budget-s", type=float, default=1800.0, help="stop starting runs after this")
    p.add_argument("--database-url", default=None, help="default: DATABASE_URL, else embedded")
    p.add_argument("--equivalents-all-seeds", action="store_true")
    args = p.parse_args(argv)
    unknown = set(args.scenarios) - set(scenarios.SCENARIOS)
    if unknown:
        p.error(f"unknown scenario(s): {sorted(unknown)}")
    known = {m.name for m in MUTANTS}
    if set(args.mutants) - known:
        p.error(f"unknown mutant(s): {sorted(set(args.mutants) - known)}")
    if args.need is None:
        args.need = math.ceil(args.seeds * 19 / 20)
    return args


def _quiet_cell(m: Mutant, scenario: str, url: str, seed: int, args: argparse.Namespace) -> Cell:
    # Every run prints its seed line; the sweep prints its own, one per decision.
    with contextlib.redirect_stdout(io.StringIO()):
        return run_cell(m, scenario, url, seed=seed, attempts=args.attempts, layer=args.layer)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse(argv)
    install()
    chosen = [m for m in MUTANTS if m.name in args.mutants]
    killable = [m for m in chosen if m.equivalent is None]
    equivalent = [m for m in chosen if m.equivalent is not None]
    reals = [] if args.no_controls else list(controls())
    tallies: dict[str, Tally] = {m.name: Tally() for m in [*chosen, *reals]}
    deadline = time.monotonic() + args.budget_s
    out_of_time = False
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    print(
        f"mutant sweep: seeds {seeds.start}..{seeds.stop - 1}, attempts {args.attempts},"
        f" layer {args.layer}, scenarios {','.join(args.scenarios)}",
        flush=True,
    )
    with provisioned(args.database_url) as handle:
        for seed in seeds:
            for m in [*killable, *equivalent, *reals]:
                if m in equivalent and seed != seeds.start and not args.equivalents_all_seeds:
                    continue
                if time.monotonic() > deadline:
                    out_of_time = True
                    break
                t = tallies[m.name]
                t.seeds += 1
                found: Cell | None = None
                for name in args.scenarios:
                    cell = _quiet_cell(m, name, handle.url, seed, args)
                    t.runs += cell.attempts
                    t.seconds += cell.duration_s
                    if cell.status in ("caught", "FAIL", "unknown", "error"):
                        t.by_check.update(cell.by)
                        t.bad.append(f"seed {seed} {name}: {cell.status} by {', '.join(cell.by)}")
                    if cell.status == "caught" and m in killable:
                        found = cell
                        break  # one catching scenario is enough for this seed
                if m in killable:
                    if found is not None:
                        t.caught += 1
                        t.caught_first_attempt += found.attempts == 1
                        t.by_scenario[found.scenario] += 1
                    if seed == seeds.start:
                        t.first_seed_caught = found is not None
                    where = (
                        f"caught by {found.scenario} ({', '.join(found.by)}) in {found.attempts}"
                        f" run(s)"
                        if found
                        else "MISSED by every scenario"
                    )
                    print(f"  seed {seed:3} {m.name:28} {where}", flush=True)
            else:
                reals_bad = sum(1 for r in reals if tallies[r.name].bad)
                print(f"seed {seed} done; real strategies flagged so far: {reals_bad}", flush=True)
                continue
            break

    n = args.seeds
    print()
    print(f"{'mutant':28} {'caught':>8} {'1st try':>8} {'1st seed':>8}  scenarios / checks")
    goal = True
    for m in killable:
        t = tallies[m.name]
        ok = t.caught >= args.need and bool(t.first_seed_caught) and t.seeds == n
        goal &= ok
        print(
            f"{m.name:28} {t.caught:>3} / {t.seeds:<3} {t.caught_first_attempt:>3} / {t.seeds:<3}"
            f" {t.first_seed_caught!s:>8}  {dict(t.by_scenario)} / {dict(t.by_check)}"
            f"{'' if ok else '  <- goal missed'}"
        )
    for m in equivalent:
        t = tallies[m.name]
        goal &= not t.bad
        print(
            f"{m.name:28} equivalent: {len(t.bad)} catches in {t.seeds} seed(s)"
            + (f": {t.bad[:3]}" if t.bad else "")
        )
    print()
    print(f"{'real strategy':28} false alarms / seeds   runs")
    for r in reals:
        t = tallies[r.name]
        flagged = len({b.split(" ")[1] for b in t.bad})
        goal &= not t.bad and t.seeds == n
        print(f"{r.name:28} {flagged:>3} / {t.seeds:<3}  {t.runs:>6}  {t.bad[:3] if t.bad else ''}")
    total = sum(t.runs for t in tallies.values())
    seconds = sum(t.seconds for t in tallies.values())
    print(f"\n{total} scenario runs in {seconds:.0f} s")
    if out_of_time:
        print(f"time budget of {args.budget_s:.0f} s ran out: the sweep is incomplete", flush=True)
        return 2
    print("goal met" if goal else "goal MISSED", flush=True)
    return 0 if goal else 1


if __name__ == "__main__":
    sys.exit(main())
