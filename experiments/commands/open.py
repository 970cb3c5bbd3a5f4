"""``coupon-chaos open [RUN]``: open a run's index in the browser, where there is one."""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.cli_checks import UsageError

NAME = "open"
HELP = "open a run's report (default: latest) in the browser; without one, print its path"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "run", nargs="?", default="latest", metavar="RUN", help="id, folder, latest or previous"
    )
    parser.add_argument(
        "--results", type=Path, default=Path("results"), help="results folder (default: results)"
    )


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

    try:
        run_dir = compare.find_run(args.run, args.results)
    except compare.RunNotFound as err:
        raise UsageError(str(err)) from None
    open_page(run_dir / "index.html")
    return 0
