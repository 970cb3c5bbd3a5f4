"""The ``coupon-chaos`` subcommands, one module each (see ``experiments.cli``), and the
options they share, spelled once here."""

from __future__ import annotations

import argparse
from pathlib import Path

from experiments.cli_checks import DEFAULT_RESULTS, RESULTS_ENV

__all__ = ["add_results_option"]


def add_results_option(parser: argparse.ArgumentParser, what: str) -> None:
    """``--results DIR`` (``--out`` its old spelling), the same on every command."""
    parser.add_argument(
        "--results",
        "--out",
        dest="results",
        type=Path,
        default=None,
        metavar="DIR",
        help=f"results folder: {what} (default: ${RESULTS_ENV}, else {DEFAULT_RESULTS})",
    )
