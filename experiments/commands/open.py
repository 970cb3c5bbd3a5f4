"""``coupon-chaos open [RUN]``: open a run's index in the browser, where there is one."""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.cli_checks import results_dir
from experiments.commands import add_results_option

NAME = "open"
HELP = "open a run's report (default: latest) in the browser; without one, print its path"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", nargs="?", default="latest", metavar="RUN", help="id, folder, latest or previous"
    )
    add_results_option(parser, "where the runs are")


def open_page(page: Path) -> bool:
    """Open ``page`` with the ``webbrowser`` module; on a headless machine, say where it is."""
    import webbrowser

    uri = page.resolve().as_uri()
    try:
        opened = webbrowser.open(uri)
    except webbrowser.Error:
        opened = False
    print(f"opened {uri}" if opened else f"no browser to open it here; the page is {page}")
    return opened


def run(args: argparse.Namespace) -> int:
    from experiments import compare

    run_dir = compare.find_run(args.run, results_dir(args.results))  # RunNotFound: exit 2
    open_page(run_dir / "index.html")
    return 0
