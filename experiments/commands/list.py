"""``coupon-chaos list``: every notebook ``run`` runs, its layers and its parameters."""

from __future__ import annotations

import argparse

NAME = "list"
HELP = "list every notebook run runs: its scenario, layers, parameters (defaults, types)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--notebooks", action="store_true", help="one line per notebook: scenario, layers, file"
    )


def run(args: argparse.Namespace) -> int:
    from experiments import suite
    from experiments.params import RESERVED, type_name
    from experiments.scenarios import CATALOG, FAULTS, SCENARIOS

    notebooks = suite.discover()
    if args.notebooks:
        for nb in notebooks:
            print(f"{nb.scenario:26} {','.join(nb.layers):13} {nb.path.name}")
        return 0
    print(
        "coupon-chaos run SCENARIO -p NAME=VALUE sets a parameter (typed like its default);"
        f" {', '.join(f'{k} is {v}' for k, v in RESERVED.items())}"
    )
    groups = {
        "catalog (concurrency)": [nb for nb in notebooks if nb.scenario in CATALOG],
        "faults and bad input": [nb for nb in notebooks if nb.scenario in FAULTS],
        "other notebooks": [nb for nb in notebooks if nb.scenario not in CATALOG + FAULTS],
    }
    for heading, members in groups.items():
        if not members:
            continue
        hint = (
            ""
            if heading.startswith("other")
            else f" (coupon-chaos run --group {heading.split()[0]})"
        )
        print(f"\n== {heading}{hint} ==")
        for nb in members:
            registered = SCENARIOS.get(nb.scenario)
            title = registered.title if registered else nb.title
            print(f"{nb.scenario}: {title}  [{nb.path.name}; layers {', '.join(nb.layers)}]")
            if registered is not None:
                print(f"    {registered.description}")
            own = [
                f"{name}={default} ({type_name(default)})"
                for name, default in nb.defaults.items()
                if name not in RESERVED
            ]
            print(f"    parameters: {', '.join(own) or '(none)'}")
    return 0
