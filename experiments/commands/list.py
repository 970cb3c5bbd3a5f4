"""``coupon-chaos list``: the scenarios, their parameters and defaults, and their notebooks."""

from __future__ import annotations

import argparse

NAME = "list"
HELP = "list the scenarios with their parameters and defaults"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notebooks", action="store_true", help="list the suite's notebooks and layers instead"
    )


def run(args: argparse.Namespace) -> int:
    if args.notebooks:
        from experiments import suite

        for nb in suite.discover():
            print(f"{nb.scenario:26} {','.join(nb.layers):13} {nb.path.name}")
        return 0
    from experiments.scenarios import CATALOG, COMMON_DEFAULTS, FAULTS, SCENARIOS
    from experiments.scenarios._checks import (
        ALWAYS_ON,
        FAULT_ALWAYS_ON,
        OWN_CHECKS,
        shared_checks_of,
    )

    common = ", ".join(f"{k}={v!r}" for k, v in COMMON_DEFAULTS.items())
    print(f"every scenario takes: {common}")
    print(f"always-on checks (catalog): {', '.join(ALWAYS_ON)}")
    print(f"always-on checks (faults): {', '.join(FAULT_ALWAYS_ON)}")
    groups = {"catalog (concurrency)": CATALOG, "faults and bad input": FAULTS}
    others = tuple(name for name in SCENARIOS if name not in CATALOG + FAULTS)
    if others:
        groups["other"] = others
    for heading, names in groups.items():
        hint = "" if heading == "other" else f" (coupon-chaos run --group {heading.split()[0]})"
        print(f"\n== {heading}{hint} ==")
        for scenario in (SCENARIOS[n] for n in names if n in SCENARIOS):
            own = ", ".join(f"{k}={v!r}" for k, v in scenario.defaults.items()) or "(none)"
            print(f"{scenario.name}: {scenario.title}")
            print(f"    {scenario.description}")
            print(f"    parameters: {own}")
            needs = ", ".join(scenario.needs) or "nothing beyond HTTP"
            cannot = scenario.target_skip_reason("http://target")
            print(
                f"    needs: {needs}; "
                + ("skipped against --target" if cannot else "runs against --target")
            )
            shared = shared_checks_of(scenario.name)
            label = {ALWAYS_ON: "always-on", FAULT_ALWAYS_ON: "always-on (faults)"}.get(
                shared, "always-on except " + ", ".join(c for c in ALWAYS_ON if c not in shared)
            )
            mine = ", ".join(OWN_CHECKS.get(scenario.name, ())) or "(none declared)"
            print(f"    checks: {label}; its own: {mine}")
    return 0
