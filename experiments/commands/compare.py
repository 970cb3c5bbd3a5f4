"""``coupon-chaos compare A B``: what changed between two runs, as a table and an HTML page."""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.cli_checks import check_out_file, results_dir
from experiments.commands import add_results_option

NAME = "compare"
HELP = "compare two runs (ids, folders, latest, previous): verdicts, outcome counts, latency, throughput"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", metavar="A", help="the run before (id, folder, latest, previous)")
    parser.add_argument("b", metavar="B", help="the run after (id, folder, latest, previous)")
    add_results_option(parser, "where the runs are")
    parser.add_argument(
        "--html",
        type=Path,
        default=None,
        help="where to write the page (default: B's folder, compare-<A>.html)",
    )
    parser.add_argument("--open", action="store_true", help="open the page in a browser")


def run(args: argparse.Namespace) -> int:
    from experiments import compare
    from experiments.commands.open import open_page

    results = results_dir(args.results)
    a = compare.find_run(args.a, results)  # RunNotFound: a usage error, exit 2
    b = compare.find_run(args.b, results)
    page = args.html or b / f"compare-{a.name}.html"
    check_out_file(page, "--html")
    cmp = compare.compare_runs(a, b)
    print(compare.table(cmp))
    page.parent.mkdir(parents=True, exist_ok=True)
    compare.write_html(cmp, page)
    print(f"\npage: {page}")
    if args.open:
        open_page(page)
    return 0
