"""The scenario registry: name -> Scenario, and ``run(name, **params) -> Result``.

Each scenario is one module of this package exposing ``NAME``, ``TITLE``,
``DESCRIPTION``, ``DEFAULTS`` (its own figures, the catalog's) and
``run(**params) -> Result``. Registering another is one line in ``_MODULES``.
Common parameters of every scenario: ``seed=None``, ``layer="service"``,
``strategy="row_lock"``, ``database_url=None``, ``op_timeout_s``, ``run_timeout_s``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from experiments.result import Result

__all__ = ["CATALOG", "COMMON_DEFAULTS", "FAULTS", "SCENARIOS", "Scenario", "register", "run"]

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
    "process_crash",
)
# Add a module name to one of the tuples above to register a scenario.
_MODULES: tuple[str, ...] = CATALOG + FAULTS

COMMON_DEFAULTS: dict[str, Any] = {
    "seed": None,
    "layer": "service",
    "strategy": "row_lock",
    "database_url": None,
    "op_timeout_s": 10.0,
    "run_timeout_s": 60.0,
}


@dataclass(frozen=True)
class Scenario:
    """A registered scenario: what it is, its default figures, and how to run it."""

    name: str
    title: str
    description: str
    defaults: dict[str, Any] = field(default_factory=dict)
    runner: Callable[..., Result] | None = None

    def params(self, **overrides: Any) -> dict[str, Any]:
        """Every parameter of a run: common defaults, the scenario's, then ``overrides``."""
        unknown = set(overrides) - set(COMMON_DEFAULTS) - set(self.defaults)
        if unknown:
            raise TypeError(f"{self.name}: unknown parameter(s) {sorted(unknown)}")
        return {**COMMON_DEFAULTS, **self.defaults, **overrides}

    def run(self, **params: Any) -> Result:
        if self.runner is None:
            raise RuntimeError(f"scenario {self.name} has no run function")
        return self.runner(**self.params(**params))


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
