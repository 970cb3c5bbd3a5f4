"""The detection matrix: every scenario against every mutant and real strategy, caught by what.

A cell is one scenario run against one mutant (or real strategy), judged from the
run's status (``Result.status``, decided once, after the pipeline's own redraws of a
stampede that did not collide): ``caught`` when a check failed (which ones are
named), ``missed`` when every check passed, ``equivalent`` for a mutant no
interleaving can expose (still run: a failure there would prove the argument wrong),
``pass``/``FAIL`` for a real strategy (a FAIL is a false alarm), ``unknown`` when no
check failed but one could not decide (never a pass, a catch, a miss or an
equivalence), ``no_experiment`` when the stampede never collided in its attempts,
``error`` when the run crashed. The mutants themselves live in ``experiments.mutants``.

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

from experiments.linearizability import CHECK_NAME
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

#: "caught", "missed", "equivalent", "pass", "FAIL", "unknown", "no_experiment", "error"
Status = str
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


def _status(m: Mutant, result: Result) -> Status:
    status = result.status
    if status in ("unknown", "no_experiment"):
        return status
    if status == "skipped":
        return "unknown"  # nothing ran: it says nothing either way
    if m.name.startswith("real:"):
        return "FAIL" if status == "FAIL" else "pass"
    if status == "FAIL":
        return "caught"
    # Still run when equivalent: a failure there would mean the argument is wrong.
    return "equivalent" if m.equivalent is not None else "missed"


def _deciders(result: Result) -> list[str]:
    """The checks behind a cell's status: the failed ones, else the undecided ones."""
    failed = [v.name for v in result.failed if v.passed is False and not v.validity]
    return failed or [v.name for v in result.failed]


def run_cell(
    m: Mutant,
    scenario: str,
    database_url: str,
    *,
    seed: int,
    attempts: int = 1,
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
    for k in range(tries):
        run_seed = seed + k * ATTEMPT_STRIDE
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
        status = _status(m, result)
        lin = next((v for v in result.verdicts if v.name == CHECK_NAME), None)
        witness = list(lin.figures.get("witness_op_ids", [])) if lin and lin.passed is False else []
        cell = Cell(
            m.name,
            scenario,
            status,
            _deciders(result) if status != "missed" else [],
            run_seed,
            attempts=k + 1,
            witness_op_ids=witness,
        )
        # Only a miss is run again (the race may not have shown): anything else decides.
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
    on_cell: Callable[[Cell], None] | None = None,
    layer: str = "service",
) -> list[Cell]:
    """Run each scenario (default: the catalog) against each mutant and real strategy.

    Each run is ``experiments.scenarios.run(name, strategy=..., database_url=...,
    seed=...)`` with the mutant's strategy on its schema's database. ``database_url``
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
    """Per row: a real strategy's ``pass``/``FAIL``; a mutant ``caught`` by any scenario,
    ``equivalent`` when every cell says so, ``missed`` when every cell ran and missed
    (or is equivalent); otherwise the undecided status (``unknown``, ``no_experiment``,
    ``error``): a row whose cells could not decide is never reported missed or passed.
    """
    out: dict[str, str] = {}
    for name in dict.fromkeys(c.mutant for c in cells):
        statuses = {c.status for c in cells if c.mutant == name}
        undecided = sorted(statuses - {"pass", "FAIL", "caught", "missed", "equivalent"})
        if name.startswith("real:"):
            out[name] = "FAIL" if "FAIL" in statuses else undecided[0] if undecided else "pass"
        elif "caught" in statuses:
            out[name] = "caught"
        elif undecided:
            out[name] = undecided[0]
        elif statuses == {"equivalent"}:
            out[name] = "equivalent"
        else:
            out[name] = "missed"
    return out
