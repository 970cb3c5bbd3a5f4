"""Seed sweeps: run scenarios over many seeds into tallies, bounded by a time budget.

A run that fails or crashes is a failure with its reason; a run not started because
the budget ran out is skipped, never a pass. ``scripts/seed_sweep.py`` and
``scripts/fault_sweep.py`` are thin loops over this.
"""

from __future__ import annotations

import contextlib
import io
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from experiments import scenarios
from experiments.result import Result

__all__ = ["Tally", "exit_code", "print_totals"]


@dataclass
class Tally:
    """Passes, failures (with reasons), skips and time of one sweep cell."""

    passed: int = 0
    failed: int = 0
    skipped: int = 0
    seconds: float = 0.0
    failures: list[str] = field(default_factory=list)

    @property
    def runs(self) -> int:
        return self.passed + self.failed

    @property
    def seconds_per_run(self) -> float:
        return self.seconds / self.runs if self.runs else 0.0

    def run(self, name: str, seed: int, *, deadline: float, **params: Any) -> Result | None:
        """Run scenario ``name`` with ``seed`` unless past ``deadline`` (monotonic)."""
        if time.monotonic() >= deadline:
            self.skipped += 1
            return None
        started = time.monotonic()
        try:
            # Each run prints its seed line; the sweep's table says it all.
            with contextlib.redirect_stdout(io.StringIO()):
                result = scenarios.run(name, seed=seed, **params)
        except Exception as err:  # a crash is a failure, with its reason
            self.failed += 1
            self.failures.append(f"seed {seed}: crashed: {type(err).__name__}: {err}")
            return None
        finally:
            self.seconds += time.monotonic() - started
        if result.passed:
            self.passed += 1
        else:
            self.failed += 1
            why = "; ".join(f"{v.name}: {v.label}: {v.detail}" for v in result.failed)
            self.failures.append(f"seed {seed}: {why}")
        return result

    def line(self) -> str:
        mark = "ok" if self.failed == 0 else "FAIL"
        return (
            f"{self.passed:>3} pass {self.failed:>3} fail {self.skipped:>3} skipped "
            f"{self.seconds:7.1f}s {mark}"
        )


def exit_code(tallies: Mapping[Any, Tally]) -> int:
    """1 when any run failed, 2 when runs were skipped (budget), 0 when all passed."""
    if any(t.failed for t in tallies.values()):
        return 1
    return 2 if any(t.skipped for t in tallies.values()) else 0


def print_totals(tallies: Mapping[Any, Tally], elapsed: float) -> int:
    """Print the totals and every failure (keyed by its cell); return the exit code."""
    passed = sum(t.passed for t in tallies.values())
    failed = sum(t.failed for t in tallies.values())
    skipped = sum(t.skipped for t in tallies.values())
    print(f"\n{passed} passed, {failed} failed, {skipped} skipped in {elapsed:.1f}s")
    for key, t in tallies.items():
        for line in t.failures:
            print(f"  FAIL {' '.join(map(str, key))} {line[:400]}")
    return exit_code(tallies)
