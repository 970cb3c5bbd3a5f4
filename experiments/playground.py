"""The playground: one scenario run from knobs (ipywidgets controls and a Run button).

``Playground(...)`` holds a configuration (scenario, strategy or mutant, layer,
workers, stock, seed, fault); ``run()`` runs it and returns the ``Result``;
``controls()`` gives the widgets, whose Run button runs what they say and replaces
the charts and verdicts under them. The knobs map onto each scenario's own
parameters: ``workers`` is its ``users``, ``requests``, ``workers`` or ``ops``,
``stock`` its ``stock`` or ``amount``; a knob a scenario does not have is left out
and ``describe`` says so. A fault is its own scenario in this lab (the nemesis and
the load it hurts are designed together), so choosing one runs that fault scenario
with the same strategy, layer, seed and knobs.

The database is the one given, else ``DATABASE_URL``, else an embedded PostgreSQL
started at the first run and kept for the next ones (stopped at exit).
"""

from __future__ import annotations

import contextlib
import io
import os
from dataclasses import dataclass, field
from typing import Any

from experiments import scenarios
from experiments.mutants import MUTANTS, install, prepare
from experiments.result import Result
from experiments.sweep import OWN_DATABASE, REAL_STRATEGIES

__all__ = ["FAULT_CHOICES", "KNOBS", "SCENARIO_CHOICES", "STRATEGY_CHOICES", "Playground"]

#: The concurrency catalog, but scale (three stampedes: no single workers/stock knob).
SCENARIO_CHOICES: tuple[str, ...] = tuple(n for n in scenarios.CATALOG if n != "scale")
#: Faults that run on either layer against a shared database (input_boundary is HTTP's own).
FAULT_CHOICES: tuple[str, ...] = ("none", *(f for f in scenarios.FAULTS if f != "input_boundary"))
#: Real strategies, then every mutant by its name (each on the schema it needs).
STRATEGY_CHOICES: tuple[str, ...] = (*REAL_STRATEGIES, *(m.name for m in MUTANTS))
#: Which scenario parameter each knob sets, in order of preference.
KNOBS: dict[str, tuple[str, ...]] = {
    "workers": ("users", "requests", "workers", "ops"),
    "stock": ("stock", "amount"),
}


@dataclass
class Playground:
    """A configuration to run, and the widgets that change it."""

    scenario: str = "flash_sale"
    strategy: str = "row_lock"
    layer: str = "service"
    workers: int = 50
    stock: int = 5
    seed: int | None = None
    fault: str = "none"
    database_url: str | None = None
    #: The last result the Run button produced.
    last: Result | None = field(default=None, repr=False)
    _handle: Any = field(default=None, repr=False)
    _widgets: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.validate()

    # -- configuration -----------------------------------------------------------------

    def validate(self) -> None:
        """Raise ``ValueError`` naming the knob that is out of range or unknown."""
        if self.scenario not in SCENARIO_CHOICES:
            raise ValueError(
                f"scenario {self.scenario!r}: choose one of {', '.join(SCENARIO_CHOICES)}"
            )
        known = (*STRATEGY_CHOICES, *(f"mutant:{m.name}" for m in MUTANTS))
        if self.strategy not in known:
            raise ValueError(
                f"strategy {self.strategy!r}: choose one of {', '.join(STRATEGY_CHOICES)}"
            )
        if self.layer not in ("service", "http"):
            raise ValueError(f"layer {self.layer!r}: choose service or http")
        if self.fault not in FAULT_CHOICES:
            raise ValueError(f"fault {self.fault!r}: choose one of {', '.join(FAULT_CHOICES)}")
        for knob in ("workers", "stock"):
            value = getattr(self, knob)
            if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 500:
                raise ValueError(f"{knob} must be a whole number from 1 to 500, got {value!r}")

    @property
    def target(self) -> str:
        """The scenario that runs: the fault's, when one is chosen."""
        return self.scenario if self.fault == "none" else self.fault

    def params(self) -> tuple[dict[str, Any], list[str]]:
        """The scenario parameters the knobs set, and the knobs it has no place for."""
        defaults = scenarios.SCENARIOS[self.target].defaults
        out: dict[str, Any] = {}
        unused = []
        for knob, names in KNOBS.items():
            name = next((n for n in names if n in defaults), None)
            if name is None:
                unused.append(knob)
            else:
                out[name] = getattr(self, knob)
        return out, unused

    def _mutant(self) -> Any:
        name = self.strategy.removeprefix("mutant:")
        return next((m for m in MUTANTS if m.name == name), None)

    def expected_pass(self) -> bool | None:
        """True for a real strategy or an equivalent mutant; None for a killable mutant
        (one run may interleave so that its bug does not show)."""
        m = self._mutant()
        if m is None or m.equivalent is not None:
            return True
        return None

    def _url(self) -> str:
        url = self.database_url or os.environ.get("DATABASE_URL") or None
        if url is not None:
            return url
        if self._handle is None:
            from coupon_core.database import provision

            self._handle = provision(None)
        return str(self._handle.url)

    # -- running -----------------------------------------------------------------------

    def run(self) -> Result:
        """Run the configuration once; the seed line is printed as every run prints it."""
        self.validate()
        params, _ = self.params()
        url = self._url()
        strategy = self.strategy
        m = self._mutant()
        if m is not None:
            install()
            strategy, url = prepare(m, url)
        return scenarios.run(
            self.target,
            seed=self.seed,
            layer=self.layer,
            strategy=strategy,
            database_url=None if self.target in OWN_DATABASE else url,
            **params,
        )

    def describe(self, result: Result) -> Any:
        """A few lines of Markdown: what ran, the verdict, the figures that matter."""
        from IPython.display import Markdown

        params, unused = self.params()
        s = result.summary
        lat = s.get("latency", {})
        lines = [
            f"**{result.scenario}** · {self.strategy} · {result.layer} · seed {result.seed} · "
            + ", ".join(f"{k}={v}" for k, v in params.items()),
            f"**{'PASS' if result.passed else 'FAIL'}**: "
            + (
                "every check passed"
                if result.passed
                else "failed " + ", ".join(v.name for v in result.failed)
            )
            + self._expectation(result),
            f"outcomes {result.outcomes()}; throughput {s.get('throughput_ops_s')} ops/s; "
            f"p50 {lat.get('p50_ms')} ms, p99 {lat.get('p99_ms')} ms; "
            f"start spread {s.get('start_spread_ms')} ms",
        ]
        if self.fault != "none":
            lines.append(
                f"fault `{self.fault}` is its own scenario: it ran instead of {self.scenario}"
            )
        if unused:
            lines.append(f"{result.scenario} has no place for: {', '.join(unused)} (left out)")
        return Markdown("\n\n".join(lines))  # type: ignore[no-untyped-call]

    def _expectation(self, result: Result) -> str:
        expected = self.expected_pass()
        if expected is None:
            return " (a mutant: caught)" if not result.passed else " (a mutant this run missed)"
        return "" if result.passed == expected else " (UNEXPECTED for a correct strategy)"

    # -- widgets -----------------------------------------------------------------------

    def controls(self) -> Any:
        """The knobs, a Run button and the area each run redraws (ipywidgets)."""
        import ipywidgets as w

        style = {"description_width": "6em"}
        knobs = {
            "scenario": w.Dropdown(options=SCENARIO_CHOICES, value=self.scenario, style=style),
            "strategy": w.Dropdown(
                options=STRATEGY_CHOICES,
                value=self.strategy.removeprefix("mutant:") if self._mutant() else self.strategy,
                style=style,
            ),
            "layer": w.ToggleButtons(options=("service", "http"), value=self.layer, style=style),
            "workers": w.IntSlider(value=self.workers, min=1, max=200, style=style),
            "stock": w.IntSlider(value=self.stock, min=1, max=200, style=style),
            "seed": w.Text(
                value="" if self.seed is None else str(self.seed), placeholder="drawn", style=style
            ),
            "fault": w.Dropdown(options=FAULT_CHOICES, value=self.fault, style=style),
        }
        for name, widget in knobs.items():
            widget.description = name
        button = w.Button(description="Run", button_style="primary", icon="play")
        out = w.Output()
        self._widgets = {**knobs, "button": button, "out": out}
        button.on_click(lambda _: self._clicked())
        return w.VBox([*knobs.values(), button, out])

    def _clicked(self) -> None:
        from IPython.display import display as _display

        from experiments import report

        display: Any = _display  # IPython's display is untyped

        wid = self._widgets
        out = wid["out"]
        out.clear_output(wait=True)
        with out:
            try:
                seed_text = wid["seed"].value.strip()
                seed = int(seed_text) if seed_text else None  # before any knob changes
                self.scenario = wid["scenario"].value
                self.strategy = wid["strategy"].value
                self.layer = wid["layer"].value
                self.workers = int(wid["workers"].value)
                self.stock = int(wid["stock"].value)
                self.fault = wid["fault"].value
                self.seed = seed
                wid["button"].disabled = True
                with contextlib.redirect_stdout(io.StringIO()):
                    result = self.last = self.run()
            except ValueError as err:
                print(f"cannot run: {err}")
                return
            finally:
                wid["button"].disabled = False
            display(self.describe(result))
            display(report.verdict_table(result))
            display(report.outcome_chart(result))
            display(report.latency_ecdf(result))
            display(report.timeline(result))
