"""The run spec: what every experiment has, with one set of defaults, plus its workload's own.

Jepsen's shape: a test is one map. ``RunSpec`` holds the parameters every experiment
shares (seed, layer, strategy, database or target, timeouts, cleanup, pool size), with
the defaults written once, here; ``params`` holds the workload's own figures (stock,
users, kills, ...). A scenario is a partial spec: its module declares its own
figures (``DEFAULTS``), the common values it runs with instead of these (``COMMON``,
e.g. a fault scenario's shorter per-operation timeout), and the range each numeric
figure may take (``RANGES``). ``merge`` builds the spec from those and the caller's
values, in that order, so ``coupon-chaos list``, the notebooks, the CLI and the tests
see the same values; a value out of its range is refused here, before any work.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from coupon_core.redact import redact_url
from coupon_core.strategies import STRATEGIES, available_strategies
from experiments.errors import SpecError
from experiments.mutants import MUTANT_STRATEGIES

__all__ = [
    "COMMON_DEFAULTS",
    "COMMON_FIELDS",
    "LAYERS",
    "Range",
    "RunSpec",
    "SpecError",
    "merge",
    "strategy_names",
]

#: The layers a run drives: the service in process, or its HTTP API through uvicorn.
LAYERS: tuple[str, ...] = ("service", "http")


@dataclass(frozen=True)
class Range:
    """The values a numeric parameter may take (inclusive); ``why`` says where the bound is from."""

    low: float | None = None
    high: float | None = None
    why: str = ""

    def check(self, name: str, value: Any) -> None:
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                continue  # the type is the parameter parser's to judge
            if (self.low is not None and v < self.low) or (self.high is not None and v > self.high):
                raise SpecError(f"{name}={v!r} is out of range: {self.describe()}")

    def describe(self) -> str:
        low = "" if self.low is None else f"{_num(self.low)} <= "
        high = "" if self.high is None else f" <= {_num(self.high)}"
        return f"{low}value{high}" + (f" ({self.why})" if self.why else "")


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


@dataclass(frozen=True)
class RunSpec:
    """One experiment, every parameter of it: see the module."""

    scenario: str
    seed: int | None = None
    layer: str = "service"
    strategy: str = "row_lock"
    #: The database (None: DATABASE_URL, else an embedded PostgreSQL the lab starts).
    database_url: str | None = None
    #: Each operation's bound; the service's pool wait and statement timeout follow it.
    op_timeout_s: float = 10.0
    #: The whole run's bound, every attempt included: past it the run ends and says so.
    run_timeout_s: float = 60.0
    #: An external server (http://host:port) to run against over HTTP.
    target: str | None = None
    #: Delete the run's own rows afterwards.
    cleanup: bool = False
    #: The service's pool size (None: sized for the workers, at most 32).
    pool_max: int | None = None
    #: The workload's own figures.
    params: Mapping[str, Any] = field(default_factory=dict)
    #: The layer asked for, when the scenario runs on another (HTTP only, or a target).
    requested_layer: str | None = None

    def __getitem__(self, name: str) -> Any:
        """A workload figure: ``spec["stock"]``."""
        return self.params[name]

    def common(self) -> dict[str, Any]:
        """The common parameters, as a Result records them (the URL masked: params land
        in reports)."""
        return {
            "seed": self.seed,
            "layer": self.layer,
            "strategy": self.strategy,
            "database_url": None if self.database_url is None else redact_url(self.database_url),
            "op_timeout_s": self.op_timeout_s,
            "run_timeout_s": self.run_timeout_s,
            "target": None if self.target is None else redact_url(self.target),
            "cleanup": self.cleanup,
            "pool_max": self.pool_max,
        } | ({} if self.requested_layer is None else {"requested_layer": self.requested_layer})

    def replace(self, **changes: Any) -> RunSpec:
        return dataclasses.replace(self, **changes)


#: The common parameters (every field but the scenario's name and its own figures).
COMMON_FIELDS: tuple[str, ...] = tuple(
    f.name
    for f in dataclasses.fields(RunSpec)
    if f.name not in ("scenario", "params", "requested_layer")
)
#: Their defaults, stated once (the fields' defaults above).
COMMON_DEFAULTS: dict[str, Any] = {
    f.name: f.default for f in dataclasses.fields(RunSpec) if f.name in COMMON_FIELDS
}
#: Ranges of the common parameters.
COMMON_RANGES: dict[str, Range] = {
    "op_timeout_s": Range(0.05, 600, "an operation's bound, in seconds"),
    "run_timeout_s": Range(0.1, 3600, "a run's bound, in seconds"),
    "pool_max": Range(1, 500, "connections of one service pool"),
}


def strategy_names() -> list[str]:
    """The strategies a run may name: the real ones, then the lab's mutants
    (``mutant:<bug>``, registered with coupon_core when a run starts). A strategy a
    caller registered itself (a test's plant) is taken too."""
    return [*available_strategies(), *(s.name for s in MUTANT_STRATEGIES)]


def merge(
    scenario: str,
    *,
    defaults: Mapping[str, Any],
    common: Mapping[str, Any] | None = None,
    ranges: Mapping[str, Range] | None = None,
    given: Mapping[str, Any] | None = None,
    layers: Sequence[str] = LAYERS,
) -> RunSpec:
    """The spec of one run: common defaults < the scenario's ``common`` < its figures'
    ``defaults`` < ``given``; every value checked against its range.

    ``layers`` are the layers the scenario can run on: asked for another (the suite runs
    every notebook on one layer), it runs on the first and records the layer asked for.
    A target is reached over HTTP, so a run against one is an HTTP run."""
    given = dict(given or {})
    unknown = set(given) - set(COMMON_FIELDS) - set(defaults)
    if unknown:
        raise SpecError(
            f"{scenario}: unknown parameter(s) {sorted(unknown)}; "
            f"allowed: {', '.join([*sorted(defaults), *COMMON_FIELDS])}"
        )
    clash = set(common or {}) - set(COMMON_FIELDS)
    if clash:
        raise SpecError(f"{scenario}: COMMON names no common parameter: {sorted(clash)}")
    shadow = set(defaults) & set(COMMON_FIELDS)
    if shadow:
        raise SpecError(f"{scenario}: its figures shadow common parameters: {sorted(shadow)}")
    values = {**COMMON_DEFAULTS, **(common or {})}
    own = dict(defaults)
    for name, value in given.items():
        (values if name in COMMON_FIELDS else own)[name] = value
    for name, r in {**COMMON_RANGES, **(ranges or {})}.items():
        value = values.get(name, own.get(name))
        if value is not None:
            r.check(name, value)
    if values["layer"] not in LAYERS:
        raise SpecError(f"layer must be one of {', '.join(LAYERS)}, not {values['layer']!r}")
    strategy = values["strategy"]
    if not isinstance(strategy, str) or (
        strategy not in STRATEGIES and strategy not in strategy_names()
    ):
        raise SpecError(f"unknown strategy {strategy!r}; choose from {', '.join(strategy_names())}")
    allowed = [x for x in layers if values["target"] is None or x == "http"]
    if not allowed:
        raise SpecError(f"{scenario}: cannot run against a target (it runs on {list(layers)})")
    requested = None
    if values["layer"] not in allowed:
        requested, values["layer"] = values["layer"], allowed[0]
    return RunSpec(scenario=scenario, params=own, requested_layer=requested, **values)
