"""Sweeps: scenarios x strategies x layers over many seeds, into tidy tables.

``run_sweep`` runs every cell of the grid for seeds ``first_seed .. first_seed + N - 1``
on one database, one run at a time, bounded by a time budget, and returns a
``Sweep``: three pandas frames, one row per run (``runs``), per operation (``ops``)
and per run and check (``checks``), that ``experiments.sweep_tables`` writes as CSV
and ``experiments.sweep_report`` charts. Besides what each run's result says, a
sweep measures two things a single run does not:

- retries per claim of the ``serializable`` strategy (its process-wide retry
  count, read before and after each run: runs never overlap in a sweep);
- the time the run's backends spent waiting for a lock (``experiments.waits``:
  ``pg_stat_activity`` sampled every 10 ms), for every strategy.

A run that crashes is recorded with its error (status ``error``); a run not started
because the budget ran out is recorded ``skipped``, never as a pass. Strategies are
the real ones (``REAL_STRATEGIES``) or, by the name ``mutants``, every mutant of
``experiments.mutants`` (each on the schema it needs): for those a failed check is a
detection, and the detection rate per mutant and check is a figure of the sweep.

``Tally`` and ``print_totals`` serve ``scripts/fault_sweep.py``'s printed table.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from coupon_core import STRATEGIES, available_strategies
from experiments import scenarios
from experiments.result import Result

if TYPE_CHECKING:
    import pandas as pd


__all__ = [
    "OWN_DATABASE",
    "REAL_STRATEGIES",
    "Sweep",
    "Tally",
    "check_params",
    "exit_code",
    "expand_strategies",
    "mask",
    "print_totals",
    "run_sweep",
]

#: The real claim strategies (what ``all`` means here as in ``bench`` and ``mutants``):
#: coupon_core's, in its registry's order, the lab's mutants left out.
REAL_STRATEGIES: tuple[str, ...] = tuple(
    name for name in STRATEGIES if name in available_strategies()
)
#: What a scenario needs that makes it bring its own database: a restart must not stop
#: the shared one, and a replicated cluster is started by the scenario itself (given
#: a URL, failover wants the user's failover command and stale_reads refuses to run).
_OWN_DATABASE_NEEDS = frozenset({"database_process", "cluster"})
#: Scenarios that bring their own database (by what they declare they need).
OWN_DATABASE = frozenset(
    name
    for name, scenario in scenarios.SCENARIOS.items()
    if _OWN_DATABASE_NEEDS & set(scenario.needs)
)
#: Parameters a sweep sets itself: ``-p`` may not.
_RESERVED = frozenset({"seed", "layer", "strategy", "database_url"})
#: How often the lock-wait sampler looks (see experiments.waits).
LOCK_SAMPLE_S = 0.01


def mask(text: str) -> str:
    """``text`` with any URL's password replaced by ``***`` (errors land in the tables)."""
    return re.sub(r"://([^:/@\s]+):[^@\s]*@", r"://\1:***@", text)


def expand_strategies(names: Iterable[str]) -> list[str]:
    """``all`` -> the real strategies, ``mutants`` -> every mutant's name; else as given.

    Raises ``ValueError`` naming what is unknown.
    """
    from experiments.mutants import MUTANTS

    mutant_names = [m.name for m in MUTANTS]
    out: list[str] = []
    for name in names:
        chosen = {
            "all": list(REAL_STRATEGIES),
            "mutants": mutant_names,
        }.get(name, [name])
        for n in chosen:
            if n not in REAL_STRATEGIES and n not in mutant_names:
                raise ValueError(
                    f"unknown strategy {n!r}; choose all, mutants, "
                    f"{', '.join(REAL_STRATEGIES)} or a mutant ({', '.join(mutant_names)})"
                )
            if n not in out:
                out.append(n)
    if not out:
        raise ValueError("no strategy chosen")
    return out


def check_params(names: Sequence[str], params: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` unless every scenario exists and takes every parameter."""
    unknown = [n for n in names if n not in scenarios.SCENARIOS]
    if unknown:
        raise ValueError(
            f"unknown scenario(s) {', '.join(unknown)}; have {', '.join(scenarios.SCENARIOS)}"
        )
    reserved = sorted(set(params) & _RESERVED)
    if reserved:
        raise ValueError(f"set {', '.join(reserved)} with its own option, not as a parameter")
    for key in params:
        without = [n for n in names if key not in scenarios.SCENARIOS[n].defaults]
        if without:
            takes = sorted(scenarios.SCENARIOS[without[0]].defaults)
            raise ValueError(
                f"parameter {key!r} is not one of {without[0]}'s "
                f"({', '.join(takes) or 'it has none'})"
            )


@dataclass
class Sweep:
    """A sweep's tidy tables and what it was asked to do."""

    runs: pd.DataFrame
    ops: pd.DataFrame
    checks: pd.DataFrame
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def real(self) -> pd.DataFrame:
        """The runs of real strategies (not mutants)."""
        return self.runs[self.runs["kind"] == "strategy"]


Progress = Callable[[dict[str, Any], int, int], None]


@dataclass
class _Runner:
    database_url: str
    lock_sample_s: float = LOCK_SAMPLE_S
    runs: list[dict[str, Any]] = field(default_factory=list)
    ops: list[dict[str, Any]] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)

    def one(
        self, name: str, strategy: str, layer: str, seed: int, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        from coupon_core import get_strategy
        from experiments.mutants import MUTANTS, prepare
        from experiments.waits import LockWaitSampler

        key = {"scenario": name, "strategy": strategy, "layer": layer, "seed": seed}
        mutant = next((m for m in MUTANTS if m.name == strategy), None)
        row: dict[str, Any] = {
            **key,
            "kind": "strategy" if mutant is None else "mutant",
            "equivalent": mutant is not None and mutant.equivalent is not None,
        }
        url = self.database_url
        run_strategy = strategy
        if mutant is not None:
            run_strategy, url = prepare(mutant, url)
        counter = getattr(get_strategy(run_strategy), "retries", None)
        retries_before = counter.value if counter is not None else 0
        started = time.monotonic()
        try:
            sampler = LockWaitSampler(url, f"coupon-{name}-", interval_s=self.lock_sample_s)
            with sampler, contextlib.redirect_stdout(io.StringIO()):
                result = scenarios.run(
                    name,
                    seed=seed,
                    layer=layer,
                    strategy=run_strategy,
                    database_url=None if name in OWN_DATABASE else url,
                    **params,
                )
        except Exception as err:  # a crash is recorded with its reason, never a pass
            row.update(status="error", error=mask(f"{type(err).__name__}: {err}")[:500])
            row["duration_s"] = round(time.monotonic() - started, 3)
            self.runs.append(row)
            return row
        retries = (counter.value - retries_before) if counter is not None else None
        self._record(row, key, result, retries, sampler.waits.to_dict())
        return row

    def _record(
        self,
        row: dict[str, Any],
        key: dict[str, Any],
        result: Result,
        retries: int | None,
        waits: dict[str, Any],
    ) -> None:
        s = result.summary
        load = [o for o in result.history.ops if o.phase == "load"] or [
            o for o in result.history.ops if o.phase != "setup"
        ]
        claims = [o for o in load if o.kind == "claim"]
        lat = sorted(o.latency_ns / 1e6 for o in claims) or sorted(o.latency_ns / 1e6 for o in load)
        failed = [v.name for v in result.failed]
        row.update(
            # The run's status, decided once (Result.status): a run that tested nothing
            # (no_experiment) or could not decide (unknown) is never a pass.
            status=result.status,
            attempts=len(result.attempts),
            attempt_statuses=";".join(a.status for a in result.attempts),
            error=None,
            failed_checks=";".join(failed),
            duration_s=round(result.duration_s, 3),
            ops=len(load),
            claims=len(claims),
            wall_s=s.get("wall_s"),
            throughput_ops_s=s.get("throughput_ops_s"),
            start_spread_ms=s.get("start_spread_ms"),
            # The run's own figure, where its pipeline measured one (stampedes).
            peak_in_flight=s.get("peak_in_flight"),
            overlap_with_winner=s.get("overlap_with_winner"),
            p50_ms=_quantile(lat, 0.5),
            p99_ms=_quantile(lat, 0.99),
            max_ms=lat[-1] if lat else None,
            retries=retries,
            retries_per_claim=(retries / len(claims)) if retries is not None and claims else None,
            lock_wait_ms=round(1000 * waits["wait_s"], 3) if waits["error"] is None else None,
            lock_wait_per_claim_ms=(
                round(1000 * waits["wait_s"] / len(claims), 4)
                if waits["error"] is None and claims
                else None
            ),
            lock_waiters_peak=waits["peak"] if waits["error"] is None else None,
            lock_samples=waits["samples"],
            lock_sample_ms=waits["interval_ms"],
            lock_sampler_error=None if waits["error"] is None else mask(waits["error"]),
        )
        # One column per (operation kind, result): the outcome counts as numbers.
        for kind, by in result.outcomes().items():
            for res, n in by.items():
                row[f"{kind}_{res}"] = n
        self.runs.append(row)
        for v in result.verdicts:
            self.checks.append({**key, "check": v.name, "verdict": v.label, "detail": v.detail})
        origin = result.history.origin_ns
        for o in result.history.ops:
            self.ops.append(
                {
                    **key,
                    "op_id": o.op_id,
                    "worker": o.worker,
                    "kind": o.kind,
                    "user": o.user,
                    "result": o.result,
                    "outcome": o.outcome,
                    "http_status": o.http_status,
                    "phase": o.phase,
                    "t_invoke_s": (o.invoke_ns - origin) / 1e9,
                    "t_complete_s": (o.complete_ns - origin) / 1e9,
                    "latency_ms": o.latency_ns / 1e6,
                }
            )


def _quantile(sorted_values: list[float], q: float) -> float | None:
    """The ``q`` quantile, taken as every figure is (``figures.quantile``), to 0.1 us."""
    from experiments.figures import quantile

    value = quantile(sorted_values, q)
    return None if value is None else round(value, 4)


def run_sweep(
    names: Sequence[str],
    *,
    seeds: int,
    first_seed: int | None = 1,
    strategies: Sequence[str] = ("all",),
    layers: Sequence[str] = ("service",),
    params: Mapping[str, Any] | None = None,
    database_url: str | None = None,
    budget_s: float = 1800.0,
    progress: Progress | None = None,
) -> Sweep:
    """Run ``names`` x strategies x layers for ``seeds`` seeds; see the module docstring.

    ``first_seed`` None draws one (printed). Raises ``ValueError`` for an unknown scenario, strategy or layer, a parameter a
    scenario does not take, or fewer than one seed, before anything runs.
    """
    import pandas as pd

    from coupon_core.database import provisioned
    from experiments.lab import LAYERS
    from experiments.plans import draw_seed

    params = dict(params or {})
    if first_seed is None:
        first_seed = draw_seed(None)
        print(
            f"[sweep] first seed {first_seed} (drawn): seeds {first_seed}..{first_seed + seeds - 1}"
        )
    if seeds < 1:
        raise ValueError(f"seeds must be at least 1, got {seeds}")
    if not names:
        raise ValueError("no scenario chosen")
    check_params(names, params)
    chosen = expand_strategies(strategies)
    bad_layers = [la for la in layers if la not in LAYERS]
    if bad_layers or not layers:
        raise ValueError(f"unknown layer(s) {bad_layers}; layers are {', '.join(LAYERS)}")
    cells = [
        (name, strategy, layer)
        for name in names
        for strategy in chosen
        for layer in layers
        if layer in scenarios.SCENARIOS[name].layers
    ]
    total = len(cells) * seeds
    t0 = time.monotonic()
    deadline = t0 + budget_s
    done = 0
    # The fault scenarios quiet the pool during their faults; between runs, too.
    logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
    with provisioned(database_url) as handle:
        runner = _Runner(handle.url)
        for seed in range(first_seed, first_seed + seeds):
            for name, strategy, layer in cells:
                if time.monotonic() >= deadline:
                    row: dict[str, Any] = {
                        "scenario": name,
                        "strategy": strategy,
                        "layer": layer,
                        "seed": seed,
                        "status": "skipped",
                        "error": f"the sweep's budget of {budget_s:g} s ran out",
                    }
                    runner.runs.append(row)
                else:
                    row = runner.one(name, strategy, layer, seed, params)
                done += 1
                if progress is not None:
                    progress(row, done, total)
    from experiments.mutants import MUTANTS

    kinds = {m.name: "mutant" for m in MUTANTS}
    runs = pd.DataFrame(runner.runs)
    runs["kind"] = runs["strategy"].map(lambda s: kinds.get(s, "strategy"))
    return Sweep(
        runs=runs,
        ops=pd.DataFrame(runner.ops),
        checks=pd.DataFrame(runner.checks),
        meta={
            "scenarios": list(names),
            "strategies": chosen,
            "layers": list(layers),
            "seeds": seeds,
            "first_seed": first_seed,
            "params": params,
            "budget_s": budget_s,
            "elapsed_s": round(time.monotonic() - t0, 3),
            "runs": total,
        },
    )


# -- tallies for the printed tables of scripts/fault_sweep.py -------------------------------


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
        self._count(seed, result)
        return result

    def _count(self, seed: int, result: Result) -> None:
        """A pass only when the run's status is: no_experiment and unknown are failures."""
        if result.passed:
            self.passed += 1
        else:
            self.failed += 1
            why = "; ".join(f"{v.name}: {v.label}: {v.detail}" for v in result.failed)
            self.failures.append(f"seed {seed}: {result.status}: {why}")

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
