"""process_crash over many seeds: unknown ops per kill, recovery times, rolling-restart failures.

    .venv/bin/python scripts/crash_sweep.py --seeds 20 --kills 2 [--budget-s 900]

Each seed is one run (seeds 1..N); a run that fails is reported with its failed
checks. Prints each run's figures and the totals (min / median / max) at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import statistics
import sys
import time
from typing import Any

from experiments import scenarios


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return (
        f"min {min(values):.3f} median {statistics.median(values):.3f} max {max(values):.3f}"
        f" (n={len(values)})"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=20)
    p.add_argument("--kills", type=int, default=2)
    p.add_argument("--server-workers", type=int, default=2)
    p.add_argument("--budget-s", type=float, default=900.0, help="stop starting runs after this")
    p.add_argument("--database-url", default=None)
    args = p.parse_args(argv)
    t0 = time.monotonic()
    unknown: list[float] = []
    gone: list[float] = []
    ready: list[float] = []
    first_ok: list[float] = []
    rolling_failed: list[float] = []
    rolling_ops: list[float] = []
    failed_runs: list[str] = []
    runs = 0
    for seed in range(1, args.seeds + 1):
        if time.monotonic() - t0 > args.budget_s:
            print(f"budget spent: seeds {seed}..{args.seeds} not run", flush=True)
            break
        with contextlib.redirect_stdout(io.StringIO()):
            result = scenarios.run(
                "process_crash",
                seed=seed,
                kills=args.kills,
                server_workers=args.server_workers,
                database_url=args.database_url,
            )
        runs += 1
        s: dict[str, Any] = result.summary
        unknown += s["unknown_per_kill"]
        gone += [g for g in s["backends_gone_s"] if g is not None]
        ready += [r for r in s["restart_ready_s"] if r is not None]
        first_ok += [f for f in s["first_ok_on_new_s"] if f is not None]
        rolling_failed.append(s["rolling_failed"])
        rolling_ops.append(s["rolling_ops"])
        if not result.passed:
            failed_runs.append(f"seed {seed}: {[(v.name, v.detail) for v in result.failed]}")
        print(
            f"seed {seed}: {'pass' if result.passed else 'FAIL'} unknown/kill "
            f"{s['unknown_per_kill']} backends_gone_s {s['backends_gone_s']} ready_s "
            f"{s['restart_ready_s']} first_ok_s {s['first_ok_on_new_s']} rolling failed "
            f"{s['rolling_failed']}/{s['rolling_ops']} {s['rolling_failed_by_kind']}",
            flush=True,
        )
    print(f"\n{runs} runs, {runs * args.kills} kills, {time.monotonic() - t0:.0f} s")
    print(f"unknown ops per kill:        {_spread(unknown)}")
    print(f"backends gone after kill s:  {_spread(gone)}")
    print(f"replacement ready after s:   {_spread(ready)}")
    print(f"first 200 from it after s:   {_spread(first_ok)}")
    print(f"rolling restart failed ops:  {_spread(rolling_failed)} of {_spread(rolling_ops)}")
    print(f"runs with failed ops in rolling restart: {sum(1 for f in rolling_failed if f)}")
    for line in failed_runs:
        print("FAILED", line)
    return 1 if failed_runs else 0


if __name__ == "__main__":
    sys.exit(main())
