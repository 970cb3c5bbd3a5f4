"""The suite's notebooks and the jobs of a run: what to run, on which layer, with which seed."""

from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "LAYERS",
    "NOTEBOOKS_DIR",
    "SEED_BITS",
    "Job",
    "Notebook",
    "common_parameters",
    "derive_seed",
    "discover",
    "plan_jobs",
    "rerun_command",
    "scenario_layers",
]

LAYERS: tuple[str, ...] = ("service", "http")
NOTEBOOKS_DIR = Path(__file__).resolve().parents[2] / "notebooks"
SEED_BITS = 31


@dataclass(frozen=True)
class Notebook:
    """A notebook of the suite: which scenario it runs, on which layers, with which knobs."""

    path: Path
    scenario: str
    layers: tuple[str, ...]
    #: Parameter names declared in its ``parameters`` cell (only those are injected).
    parameters: frozenset[str]
    title: str = ""
    #: Each parameter's default, as its source text in the ``parameters`` cell.
    defaults: dict[str, str] = field(default_factory=dict, compare=False, hash=False)

    @classmethod
    def load(cls, path: Path) -> Notebook:
        import nbformat
        import papermill

        nb = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
        meta = nb.metadata.get("coupon_chaos", {})
        layers = tuple(meta.get("layers", LAYERS))
        inspected = papermill.inspect_notebook(str(path))
        params = frozenset(inspected)
        defaults = {name: str(p.get("default")) for name, p in inspected.items()}
        title = next(
            (
                line.lstrip("# ").strip()
                for cell in nb.cells
                if cell.cell_type == "markdown"
                for line in cell.source.splitlines()
                if line.startswith("#")
            ),
            "",
        )
        return cls(path, str(meta.get("scenario", path.stem)), layers, params, title, defaults)

    @property
    def records(self) -> bool:
        """It records a Result (it takes ``out_dir``): judged by that Result's checks."""
        return "out_dir" in self.parameters


def discover(directory: Path = NOTEBOOKS_DIR) -> list[Notebook]:
    """Every notebook of ``directory`` (``*.ipynb``, checkpoints excluded), by file name."""
    return [Notebook.load(p) for p in sorted(Path(directory).glob("*.ipynb"))]


def scenario_layers(directory: Path = NOTEBOOKS_DIR) -> dict[str, tuple[str, ...]]:
    """Scenario -> layers of every notebook, read from metadata only (fast: for ``--help``)."""
    found: dict[str, tuple[str, ...]] = {}
    for path in sorted(Path(directory).glob("*.ipynb")):
        try:
            meta = json.loads(path.read_text(encoding="utf-8")).get("metadata", {})
        except (OSError, ValueError):
            continue
        own = meta.get("coupon_chaos", {}) if isinstance(meta, dict) else {}
        found[str(own.get("scenario", path.stem))] = tuple(own.get("layers", LAYERS))
    return found


def derive_seed(run_seed: int, scenario: str) -> int:
    """A scenario's seed: stable for a run seed and a name, independent of the others."""
    digest = hashlib.sha256(f"{run_seed}:{scenario}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % (1 << SEED_BITS)


@dataclass(frozen=True)
class Job:
    """One notebook on one layer."""

    notebook: Notebook
    layer: str
    strategy: str
    seed: int
    #: Parameters set with ``-p`` (already typed), as (name, value) pairs.
    overrides: tuple[tuple[str, Any], ...] = ()

    @property
    def stem(self) -> str:
        return f"{self.notebook.scenario}-{self.layer}"

    @property
    def rerun(self) -> str:
        """The command that replays exactly this job's plan: its scenario, layer and seed."""
        return rerun_command(
            [self.notebook.scenario], [self.layer], self.strategy, self.seed, dict(self.overrides)
        )

    def rerun_against(self, target: str | None, by_url: bool) -> str:
        """``rerun`` against a target: its ``--target`` kept, its database by URL."""
        if target is None:
            return self.rerun
        return rerun_command(
            [self.notebook.scenario],
            [self.layer],
            self.strategy,
            self.seed,
            dict(self.overrides),
            target,
            by_url=by_url,
        )

    def parameters(
        self, out_dir: Path, target: str | None = None, cleanup: bool = False
    ) -> dict[str, Any]:
        """What papermill injects; never the database URL (it goes in the environment)."""
        offered: dict[str, Any] = {
            "seed": self.seed,
            "layer": self.layer,
            "strategy": self.strategy,
            "out_dir": str(out_dir),
            **dict(self.overrides),
        }
        # Only when asked: a notebook without these parameters still runs as before.
        if target is not None:
            offered["target"] = target
        if cleanup:
            offered["cleanup"] = True
        return {k: v for k, v in offered.items() if k in self.notebook.parameters}


def plan_jobs(
    notebooks: Sequence[Notebook],
    scenarios: Sequence[str] | None,
    layers: Sequence[str],
    strategy: str,
    run_seed: int,
    overrides: dict[str, dict[str, Any]] | None = None,
) -> list[Job]:
    """The (notebook, layer) pairs to run, in notebook order; unknown names are an error.

    One notebook runs with ``run_seed`` itself; several each with a seed derived from it.
    ``overrides`` are the ``-p`` parameters per scenario (typed); ``strategy`` among
    them replaces ``strategy`` for that scenario.
    """
    by_name = {nb.scenario: nb for nb in notebooks}
    if scenarios:
        unknown = [s for s in scenarios if s not in by_name]
        if unknown:
            raise ValueError(f"no notebook for {', '.join(unknown)}; have {', '.join(by_name)}")
        chosen = [nb for nb in notebooks if nb.scenario in set(scenarios)]
    else:
        chosen = list(notebooks)
    jobs = []
    for nb in chosen:
        own = dict((overrides or {}).get(nb.scenario, {}))
        own_strategy = str(own.pop("strategy", strategy))
        seed = run_seed if len(chosen) == 1 else derive_seed(run_seed, nb.scenario)
        jobs += [
            Job(nb, layer, own_strategy, seed, tuple(own.items()))
            for layer in layers
            if layer in nb.layers
        ]
    return jobs


def rerun_command(
    scenarios: Sequence[str] | None,
    layers: Sequence[str],
    strategy: str,
    seed: int,
    parameters: dict[str, Any] | None = None,
    target: str | None = None,
    *,
    by_url: bool = False,
) -> str:
    """``coupon-chaos run ...`` replaying a run: a bare ``--seed`` would run other layers.

    ``by_url``: the run used a database by URL; the command reads it (password and all)
    from ``$DATABASE_URL`` rather than showing it.
    """
    from experiments.params import assignments

    words = ["coupon-chaos", "run", *(scenarios or ("all",))]
    layer = "both" if set(layers) == set(LAYERS) else ",".join(layers)
    if target is not None:
        words += ["--target", target]
    elif layer != "service":
        words += ["--layer", layer]
    if strategy != "row_lock":
        words += ["--strategy", strategy]
    words += assignments(parameters or {})
    url = ""
    if by_url:
        # Quoted for the shell to expand: the URL is read, never shown. The reader sets
        # DATABASE_URL (against a target: to the target's database); TARGET_DATABASE_URL
        # is only how the suite hands it to a kernel, and nothing sets it for a reader.
        url = ' --database-url "$DATABASE_URL"'
    return f"{shlex.join(words)}{url} {shlex.join(['--seed', str(seed)])}"


def common_parameters(jobs: Sequence[Job]) -> dict[str, Any]:
    """The -p parameters of a run (one value each, set on the notebooks declaring it)."""
    given: dict[str, Any] = {}
    for job in jobs:
        given.update(job.overrides)
    return given
