"""``coupon-chaos list``: what ``run`` runs: per scenario its layers, its fault, what it
needs, its typed parameters and their ranges, and the checks a run under one strategy
(``--strategy``, default row_lock) returns, those it skips under it named with the reason."""

from __future__ import annotations

import argparse
from typing import Any

from experiments import suite

NAME = "list"
HELP = "list every notebook run runs: its scenario, layers, parameters (defaults, types)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from experiments.commands.run import strategy_choices

    parser.add_argument(
        "--notebooks", action="store_true", help="list the suite's notebooks and layers instead"
    )
    parser.add_argument(
        "--strategy",
        choices=strategy_choices(),
        default="row_lock",
        metavar="STRATEGY",
        help="show the checks a run under this claim strategy runs and skips"
        f" (default: row_lock): {', '.join(strategy_choices())}",
    )


def run(args: argparse.Namespace) -> int:
    if args.notebooks:
        for nb in suite.discover():
            print(f"{nb.scenario:26} {','.join(nb.layers):13} {nb.path.name}")
        return 0
    from experiments.checks import SHARED
    from experiments.scenarios import COMMON_DEFAULTS, GROUPS, NEED, SCENARIOS

    common = ", ".join(f"{k}={v!r}" for k, v in COMMON_DEFAULTS.items())
    print(f"every scenario takes: {common}")
    print(f"always-on checks (catalog): {', '.join(SHARED['catalog'])}")
    print(f"always-on checks (faults): {', '.join(SHARED['faults'])}")
    print(_P_HINT)
    print("what a scenario may need: " + "; ".join(f"{k}: {v}" for k, v in NEED.items()))
    notebooks = {nb.scenario: nb for nb in suite.discover()}
    titles = {
        "catalog": "catalog (concurrency)",
        "faults": "faults and bad input",
        "replication": "replication (a replicated cluster)",
        "distributed": "distributed (Locust)",
    }
    groups = {titles.get(name, name): members for name, members in GROUPS.items()}
    grouped = {name for members in GROUPS.values() for name in members}
    others = tuple(name for name in SCENARIOS if name not in grouped)
    if others:
        groups["other"] = others
    for heading, names in groups.items():
        hint = "" if heading == "other" else f" (coupon-chaos run --group {heading.split()[0]})"
        print(f"\n== {heading}{hint} ==")
        for scenario in (SCENARIOS[n] for n in names if n in SCENARIOS):
            own = _parameters(scenario.defaults, notebooks.get(scenario.name))
            print(f"{scenario.name}: {scenario.title}{_where(notebooks.get(scenario.name))}")
            print(f"    {scenario.description}")
            print(f"    parameters: {own}")
            spec = scenario.spec(strategy=args.strategy)
            print(f"    layers: {', '.join(scenario.layers)}")
            if scenario.fault:
                print(f"    fault: {scenario.fault}")
            differs = {k: getattr(spec, k) for k in scenario.common if k != "strategy"}
            if differs:
                print(f"    runs with: {', '.join(f'{k}={v!r}' for k, v in differs.items())}")
            if scenario.ranges:
                ranges = ", ".join(f"{k}: {r.describe()}" for k, r in scenario.ranges.items())
                print(f"    ranges: {ranges}")
            needs = ", ".join(scenario.needs) or "nothing beyond HTTP"
            cannot = scenario.target_skip_reason("http://target")
            print(
                f"    needs: {needs}; "
                + ("skipped against --target" if cannot else "runs against --target")
            )
            label = {"catalog": "always-on", "faults": "always-on (faults)", "own": "its own"}
            shared = len(SHARED[scenario.shared])
            mine = ", ".join(scenario.checks(spec)[shared:]) or "(none declared)"
            print(f"    checks: {label[scenario.shared]}; its own: {mine}")
            for check, reason in scenario.skipped_checks(spec).items():
                print(f"    skipped under {args.strategy}: {check}: {reason}")
    _other_notebooks([nb for name, nb in notebooks.items() if name not in SCENARIOS])
    return 0


_P_HINT = (
    "run SCENARIO -p NAME=VALUE sets a parameter, typed like its default; "
    "seed, layer, database_url, out_dir, target and cleanup are set by --seed, --layer, "
    "--database-url, --out, --target and --cleanup"
)


def _where(nb: suite.Notebook | None) -> str:
    return f"  [{nb.path.name}; layers {', '.join(nb.layers)}]" if nb else "  [no notebook]"


def _parameters(defaults: dict[str, Any], nb: suite.Notebook | None) -> str:
    """``name=default (type)``: the notebook's, as -p reads them; else the registry's."""
    from experiments.params import RESERVED, type_name

    if nb is None:
        return ", ".join(f"{k}={v!r}" for k, v in defaults.items()) or "(none)"
    shown = [f"{k}={v} ({type_name(v)})" for k, v in nb.defaults.items() if k not in RESERVED]
    return ", ".join(shown) or "(none)"


def _other_notebooks(notebooks: list[suite.Notebook]) -> None:
    """The notebooks run runs that are no registered scenario (detection, performance)."""
    if not notebooks:
        return
    print("\n== other notebooks (coupon-chaos run NAME) ==")
    for nb in notebooks:
        print(f"{nb.scenario}: {nb.title}{_where(nb)}")
        print(f"    parameters: {_parameters({}, nb)}")
