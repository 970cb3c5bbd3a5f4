"""The detection matrix: every scenario against every mutant and real strategy, caught by what.

A cell is one scenario run against one mutant (or real strategy): ``caught`` when
a check failed (which ones are named), ``missed`` when none did, ``equivalent`` for
a mutant no interleaving can expose (still run: a failure there would prove the
argument wrong), ``pass``/``FAIL`` for a real strategy (a FAIL is a false alarm),
``unknown`` when a check could not decide (never a pass), ``error`` when the run
crashed. The mutants themselves live in ``experiments.mutants``.

Retry policy: a mutant's bug is a race, and one stampede may interleave the
workers so that it does not show. A missed cell is run again, up to ``attempts``
runs, each with its own seed (``seed + k * ATTEMPT_STRIDE``, so the attempts of
two sweep seeds never share a plan). Real strategies and equivalent mutants run
once per cell: a retry there could only hide a false alarm or a wrong argument.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from experiments.checks import invalid_run, validity_check
from experiments.linearizability import CHECK_NAME, check_linearizable
from experiments.mutants import MUTANTS, Mutant, install, prepare
from experiments.result import Result

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "ATTEMPT_STRIDE",
    "Cell",
    "controls",
    "detection_matrix",
    "matrix_frame",
    "matrix_table",
    "mutant_summary",
    "run_cell",
]

Status = str  # "caught", "missed", "equivalent", "pass", "FAIL", "unknown", "error"

#: Runs of one cell drawn again, at most, because their stampede did not collide.
INVALID_REDRAWS = 3
#: Seed distance between two attempts of one cell: the attempts of sweep seeds 1..N
#: stay apart (seed 1's second attempt is not seed 2's first).
ATTEMPT_STRIDE = 100_003


@dataclass
class Cell:
    """One scenario run against one mutant (or real strategy) and what it concluded."""

    mutant: str
    scenario: str
    status: Status
    #: The checks that failed (the linearizability check included), or the error.
    by: list[str] = field(default_factory=list)
    seed: int | None = None
    #: Runs it took (a missed mutant is run again, up to the matrix's ``attempts``).
    attempts: int = 1
    duration_s: float = 0.0
    #: The linearizability witness of the deciding run, when it failed.
    witness_op_ids: list[int] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "mutant": self.mutant,
            "scenario": self.scenario,
            "status": self.status,
            "by": list(self.by),
            "seed": self.seed,
            "attempts": self.attempts,
            "duration_s": round(self.duration_s, 3),
            "witness_op_ids": list(self.witness_op_ids),
        }


def controls() -> tuple[Mutant, ...]:
    """The real strategies as rows of the matrix: each must pass every scenario."""
    from coupon_core import available_strategies

    return tuple(Mutant(f"real:{s}", s, "none: the real strategy") for s in available_strategies())


def _status(m: Mutant, failed: list[str], unknown: list[str]) -> Status:
    if m.name.startswith("real:"):
        return "FAIL" if failed else "unknown" if unknown else "pass"
    if m.equivalent is not None:
        # Still run: a failure here would mean the equivalence argument is wrong.
        return "caught" if failed else "equivalent"
    return "caught" if failed else "unknown" if unknown else "missed"


def _judged(result: Result, time_limit_s: float) -> list[Any]:
    # The pipelines add the linearizability verdict themselves; a scenario that does
    # not use them (its own open_lab) is checked here, so every cell has it.
    if any(v.name == CHECK_NAME for v in result.verdicts):
        return list(result.verdicts)
    return [*result.verdicts, check_linearizable(result.history, time_limit_s)]


def run_cell(
    m: Mutant,
    scenario: str,
    database_url: str,
    *,
    seed: int,
    attempts: int = 1,
    time_limit_s: float = 10.0,
    layer: str = "service",
    params: dict[str, Any] | None = None,
) -> Cell:
    """Run ``scenario`` against ``m`` (see the module's retry policy); one ``Cell``."""
    from experiments import scenarios as catalog

    strategy, url = prepare(m, database_url)
    killable = m.equivalent is None and not m.name.startswith("real:")
    tries = max(1, attempts) if killable else 1
    started = time.monotonic()
    cell = Cell(m.name, scenario, "error", ["not run"], seed)
    invalid = 0  # runs whose stampede did not collide: no experiment, drawn again
    k = 0
    while k < tries + invalid:
        run_seed = seed + k * ATTEMPT_STRIDE
        k += 1
        try:
            result = catalog.run(
                scenario,
                strategy=strategy,
                database_url=url,
                seed=run_seed,
                layer=layer,
                **(params or {}),
            )
        except Exception as err:  # a crashed run is reported, never counted as a pass
            cell = Cell(m.name, scenario, "error", [f"{type(err).__name__}: {err}"], run_seed)
            break
        verdicts = _judged(result, time_limit_s)
        if invalid_run(verdicts) and invalid < INVALID_REDRAWS:
            # Not a stampede (a loaded machine ran the workers one after another): it
            # neither catches a mutant nor fails a real strategy; draw another seed.
            invalid += 1
            continue
        # A check the system failed counts whether or not the stampede collided; a
        # stampede that still did not collide after the redraws decides nothing.
        validity = [v.name for v in verdicts if v.passed is False and validity_check(v.name)]
        failed = [v.name for v in verdicts if v.passed is False and v.name not in validity]
        unknown = [v.name for v in verdicts if v.passed is None] + (validity if not failed else [])
        status = _status(m, failed, unknown)
        lin = next((v for v in verdicts if v.name == CHECK_NAME), None)
        witness = list(lin.figures.get("witness_op_ids", [])) if lin and lin.passed is False else []
        cell = Cell(
            m.name,
            scenario,
            status,
            failed or unknown,
            run_seed,
            attempts=k,
            witness_op_ids=witness,
        )
        if status != "missed":
            break
    cell.duration_s = time.monotonic() - started
    return cell


def detection_matrix(
    database_url: str | None = None,
    *,
    mutants: Sequence[Mutant] | None = None,
    scenarios: Sequence[str] | None = None,
    seed: int | None = None,
    attempts: int = 1,
    scenario_params: dict[str, dict[str, Any]] | None = None,
    time_limit_s: float = 10.0,
    on_cell: Callable[[Cell], None] | None = None,
    layer: str = "service",
) -> list[Cell]:
    """Run each scenario (default: the catalog) against each mutant and real strategy.

    Each run is ``experiments.scenarios.run(name, strategy=..., database_url=...,
    seed=...)`` with the mutant's strategy on its schema's database; a scenario
    outside the pipelines gets the linearizability check here. ``database_url``
    None: ``DATABASE_URL`` or an embedded PostgreSQL started and stopped here.
    ``on_cell`` hears of each cell as it is decided.
    """
    from coupon_core.database import provisioned
    from experiments import scenarios as catalog
    from experiments.plans import draw_seed

    install()
    rows = [*(mutants if mutants is not None else MUTANTS), *controls()]
    names = list(scenarios) if scenarios is not None else list(catalog.CATALOG)
    base_seed = draw_seed(seed)
    extra = scenario_params or {}
    cells: list[Cell] = []
    with provisioned(database_url) as handle:
        for m in rows:
            for name in names:
                cell = run_cell(
                    m,
                    name,
                    handle.url,
                    seed=base_seed,
                    attempts=attempts,
                    time_limit_s=time_limit_s,
                    layer=layer,
                    params=extra.get(name),
                )
                cells.append(cell)
                if on_cell is not None:
                    on_cell(cell)
    return cells


def matrix_frame(cells: Sequence[Cell]) -> pd.DataFrame:
    """One row per cell: mutant, scenario, status, the checks that decided, seed, runs, time."""
    import pandas as pd

    return pd.DataFrame(
        [{**c.to_dict(), "by": ", ".join(c.by)} for c in cells],
        columns=["mutant", "scenario", "status", "by", "seed", "attempts", "duration_s"],
    )


def matrix_table(cells: Sequence[Cell]) -> list[list[str]]:
    """Rows of text: a header of scenarios, then one row per mutant (status and first check)."""
    scenarios = list(dict.fromkeys(c.scenario for c in cells))
    mutants = list(dict.fromkeys(c.mutant for c in cells))
    at = {(c.mutant, c.scenario): c for c in cells}
    table = [["mutant", *scenarios]]
    for m in mutants:
        row = [m]
        for s in scenarios:
            c = at.get((m, s))
            if c is None:
                row.append("")
            elif c.status in ("caught", "FAIL", "unknown", "error") and c.by:
                row.append(f"{c.status} ({c.by[0]}{'+' if len(c.by) > 1 else ''})")
            else:
                row.append(c.status)
        table.append(row)
    return table


def mutant_summary(cells: Sequence[Cell]) -> dict[str, str]:
    """Per row: ``caught`` by any scenario, ``missed``, ``equivalent``, or a real strategy's verdict."""
    out: dict[str, str] = {}
    for name in dict.fromkeys(c.mutant for c in cells):
        statuses = {c.status for c in cells if c.mutant == name}
        if name.startswith("real:"):
            out[name] = "pass" if statuses == {"pass"} else "FAIL"
        elif "caught" in statuses:
            out[name] = "caught"
        elif statuses == {"equivalent"}:
            out[name] = "equivalent"
        else:
            out[name] = "missed"
    return out
