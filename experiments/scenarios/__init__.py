"""The scenario registry: name -> Scenario, and ``run(name, **params) -> Result``.

Each scenario is one module of this package declaring its partial spec: ``NAME``,
``TITLE``, ``DESCRIPTION``, ``DEFAULTS`` (its own figures, the catalog's), optionally
``COMMON`` (common parameters it runs with instead of the defaults, e.g. a fault
scenario's shorter timeouts) and ``RANGES`` (the values each figure may take), and
``run(spec: RunSpec) -> Result``, which hands a ``pipeline.Workload`` to
``pipeline.run``. The common parameters and their one set of defaults are
``experiments.spec.RunSpec``'s. Registering another is one line in ``_MODULES``.

What a scenario needs (``NEEDS`` in its module, else ``_NEEDS`` below; see ``NEED``):
against an external ``target`` a scenario that needs what a target cannot give (the
in-process service, a server the lab controls, a superuser, the database process)
is skipped with that reason, never run and never passed; one that only reads the
``tables`` runs, and without the target's database its table checks are skipped.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from experiments.checks import SHARED, Shared
from experiments.pipeline import skipped
from experiments.result import Result
from experiments.spec import COMMON_DEFAULTS, COMMON_FIELDS, LAYERS, Range, RunSpec, merge

__all__ = [
    "CATALOG",
    "COMMON_DEFAULTS",
    "DISTRIBUTED",
    "FAULTS",
    "GROUPS",
    "ISOLATION",
    "NEED",
    "REPLICATION",
    "SCENARIOS",
    "Need",
    "Scenario",
    "register",
    "run",
]

Need = Literal[
    "tables", "service", "server", "database", "superuser", "database_process", "cluster", "locust"
]
#: What each need means; all but ``tables`` rule a scenario out against a target.
NEED: dict[str, str] = {
    "tables": "reads the final tables (its table checks are skipped without database access)",
    "service": "the in-process service (its faults hook into it)",
    "server": "a server the lab starts and controls (it kills its processes)",
    "database": "direct database access (SQL of its own, sessions holding locks)",
    "superuser": "a database superuser (it terminates other sessions' backends)",
    "database_process": "control of the database process (it stops and starts it)",
    "cluster": "a replicated PostgreSQL cluster of its own (a primary and standbys it starts)",
    "locust": "Locust master and worker processes the lab starts",
}
_TARGET_CANNOT: frozenset[str] = frozenset(NEED) - {"tables"}

#: The concurrency catalog, in the catalog's order.
CATALOG: tuple[str, ...] = (
    "mixed_load",
    "zero_stock_stampede",
    "constraint_storm",
    "interleaved_create_claim",
    "flash_sale",
    "double_dip",
    "scale",
)
#: Faults and bad input (each brings its own fault or its own database).
FAULTS: tuple[str, ...] = (
    "pool_exhaustion",
    "query_timeout",
    "connection_drop",
    "database_restart",
    "partial_failure",
    "lock_contention",
    "network_faults",
    "negative_stock",
    "input_boundary",
    "slow_clients",
    "process_crash",
)
#: Replicated PostgreSQL: failover and stale reads (each starts its own cluster).
REPLICATION: tuple[str, ...] = ("failover", "stale_reads")
#: Load from other processes (Locust master and workers).
DISTRIBUTED: tuple[str, ...] = ("locust_stampede",)
#: Multi-row anomalies at each PostgreSQL isolation level (the Elle-style checker).
ISOLATION: tuple[str, ...] = ("isolation",)
#: The groups ``coupon-chaos run --group`` and ``list`` know, in this order.
GROUPS: dict[str, tuple[str, ...]] = {
    "catalog": CATALOG,
    "faults": FAULTS,
    "replication": REPLICATION,
    "distributed": DISTRIBUTED,
    "isolation": ISOLATION,
}
# Add a module name to one of the tuples above to register a scenario.
_MODULES: tuple[str, ...] = CATALOG + FAULTS + REPLICATION + DISTRIBUTED + ISOLATION

#: What the registered scenarios need, when their module does not say (``NEEDS``).
_NEEDS: dict[str, tuple[Need, ...]] = {
    **{name: ("tables",) for name in CATALOG},
    "pool_exhaustion": ("service", "tables"),
    "query_timeout": ("service", "database", "tables"),
    "connection_drop": ("service", "superuser", "tables"),
    "database_restart": ("database_process", "service", "tables"),
    "partial_failure": ("service", "tables"),
    "lock_contention": ("service", "database", "tables"),
    "negative_stock": ("service", "database", "tables"),
    "input_boundary": ("server", "database", "tables"),
    # A replicated cluster of its own: it kills and promotes database processes.
    "failover": ("cluster", "database_process", "database", "tables"),
    "stale_reads": ("cluster", "database_process", "database", "tables"),
    # The lab opens the target's database itself (setup checks, final state); the
    # suite does not hand it one against a target: `coupon-chaos locust --target` does.
    "locust_stampede": ("locust", "database", "tables"),
}


@dataclass(frozen=True)
class Scenario:
    """A registered scenario: what it is, its partial spec, and how to run it."""

    name: str
    title: str
    description: str
    #: Its own figures, the catalog's.
    defaults: dict[str, Any] = field(default_factory=dict)
    runner: Callable[[RunSpec], Result] | None = None
    needs: tuple[Need, ...] = ()
    #: The common parameters it runs with instead of ``spec.COMMON_DEFAULTS``.
    common: dict[str, Any] = field(default_factory=dict)
    #: The range each numeric figure may take.
    ranges: dict[str, Range] = field(default_factory=dict)
    #: The shared checks it gets (``checks.SHARED``), and its own: a tuple of names, or
    #: a function of the spec for a scenario whose checks follow its figures.
    shared: Shared = "catalog"
    own_checks: tuple[str, ...] | Callable[[RunSpec], tuple[str, ...]] = ()
    #: The layers it runs on (``LAYERS``); asked for another, it runs on the first.
    layers: tuple[str, ...] = LAYERS
    #: How many pipeline runs one run of the spec makes, each under its own run bound
    #: (a module's ``count_runs(spec)``): isolation runs cells x seeds. One for the rest.
    runs: Callable[[RunSpec], int] | None = None

    def run_count(self, **overrides: Any) -> int:
        """The pipeline runs ``overrides`` make (at least one)."""
        return max(1, self.runs(self.spec(**overrides))) if self.runs is not None else 1

    #: The fault it injects (``FAULT`` in its module), for ``list``; "" when none.
    fault: str = ""
    #: The checks a run of a spec skips, with the reason (``SKIPS`` in its module): a
    #: fault that cannot happen under the spec's strategy, say. A run must skip them.
    skips: Callable[[RunSpec], dict[str, str]] | None = None

    def skipped_checks(self, spec: RunSpec | None = None) -> dict[str, str]:
        """The declared checks a run of ``spec`` skips, and why (``list`` shows them)."""
        return dict(self.skips(spec or self.spec())) if self.skips is not None else {}

    def checks(self, spec: RunSpec | None = None) -> tuple[str, ...]:
        """Every check a run of this spec returns, in order: the shared set, then its own."""
        spec = spec or self.spec()
        own = self.own_checks(spec) if callable(self.own_checks) else self.own_checks
        return (*SHARED[self.shared], *own)

    def target_skip_reason(self, target: str | None) -> str | None:
        """Why this scenario cannot run against ``target``; None when it can."""
        if target is None:
            return None
        missing = [n for n in self.needs if n in _TARGET_CANNOT]
        if not missing:
            return None
        why = "; ".join(f"{n}: {NEED[n]}" for n in missing)
        return f"cannot run against an external target, it needs {why}"

    def spec(self, **overrides: Any) -> RunSpec:
        """The run spec: common defaults, the scenario's own, then ``overrides``."""
        return merge(
            self.name,
            defaults=self.defaults,
            common=self.common,
            ranges=self.ranges,
            given=overrides,
            layers=self.layers,
        )

    def params(self, **overrides: Any) -> dict[str, Any]:
        """Every parameter of a run, flat: the common ones, then the scenario's figures."""
        spec = self.spec(**overrides)
        return {**{k: getattr(spec, k) for k in COMMON_FIELDS}, **spec.params}

    def run(self, **params: Any) -> Result:
        """Run it; against a target it cannot serve, a skipped Result with the reason."""
        if self.runner is None:
            raise RuntimeError(f"scenario {self.name} has no run function")
        spec = self.spec(**params)
        reason = self.target_skip_reason(spec.target)
        if reason is not None:
            return skipped(spec, reason)
        result = self.runner(spec)
        if result.status != "skipped":
            self._hold_to_declared(spec, result)
        return result

    def _hold_to_declared(self, spec: RunSpec, result: Result) -> None:
        """A run returns exactly its declared checks, each name once: ``list``, the
        notebooks and the report name the same ones (a difference is the lab's defect)."""
        got = [v.name for v in result.verdicts]
        want = self.checks(spec)
        if sorted(got) != sorted(want):
            missing = sorted(set(want) - set(got))
            extra = sorted(set(got) - set(want))
            raise RuntimeError(
                f"{self.name}: checks run differ from those declared:"
                f" missing {missing}, undeclared {extra}, twice {sorted({n for n in got if got.count(n) > 1})}"
            )
        passed = {v.name for v in result.verdicts if v.passed is True}
        if passed_anyway := sorted(set(self.skipped_checks(spec)) & passed):
            raise RuntimeError(
                f"{self.name}: checks declared skipped under {spec.strategy} passed: {passed_anyway}"
            )


SCENARIOS: dict[str, Scenario] = {}


def register(module_name: str) -> Scenario:
    """Import ``experiments.scenarios.<module_name>`` (or a dotted path) and register it."""
    path = module_name if "." in module_name else f"{__name__}.{module_name}"
    module = importlib.import_module(path)
    scenario = Scenario(
        name=module.NAME,
        title=module.TITLE,
        description=module.DESCRIPTION,
        defaults=dict(module.DEFAULTS),
        runner=module.run,
        needs=tuple(getattr(module, "NEEDS", _NEEDS.get(module.NAME, ()))),
        common=dict(getattr(module, "COMMON", {})),
        ranges=dict(getattr(module, "RANGES", {})),
        shared=getattr(module, "SHARED", "catalog"),
        own_checks=getattr(module, "CHECKS", ()),
        layers=tuple(getattr(module, "LAYERS", LAYERS)),
        runs=getattr(module, "count_runs", None),
        fault=str(getattr(module, "FAULT", "")),
        skips=getattr(module, "SKIPS", None),
    )
    SCENARIOS[scenario.name] = scenario
    return scenario


def run(name: str, **params: Any) -> Result:
    """Run the scenario ``name`` with its defaults overridden by ``params``."""
    try:
        scenario = SCENARIOS[name]
    except KeyError:
        raise KeyError(f"unknown scenario {name!r}; have {', '.join(SCENARIOS)}") from None
    return scenario.run(**params)


for _name in _MODULES:
    register(_name)
