"""``coupon-chaos db``: keep one embedded PostgreSQL running between commands."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from coupon_core import EmbeddedPostgres
from coupon_core.database import DatabaseError
from experiments.cli import CommandError

NAME = "db"
HELP = "start, stop or locate a long-lived embedded PostgreSQL (data in .coupon-chaos/db/)"

_ACTIONS = ("up", "down", "url", "status")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=_ACTIONS,
        help="up: start it and print its URL; down: stop it; "
        "url: print only its URL; status: say whether it runs (exit 1 when not)",
    )


def home() -> Path:
    """Where the lab keeps its state: $COUPON_CHAOS_HOME, else ./.coupon-chaos."""
    return Path(os.environ.get("COUPON_CHAOS_HOME") or Path.cwd() / ".coupon-chaos")


def database() -> EmbeddedPostgres:
    return EmbeddedPostgres(data_dir=home() / "db" / "data")


def _running(db: EmbeddedPostgres) -> bool:
    # Checked without initialising: `url` and `status` must never create a cluster.
    if not db.data_dir.joinpath("PG_VERSION").exists() or not db.is_running():
        return False
    # On a running server start() only reads the port it listens on.
    db.start()
    return True


def run(args: argparse.Namespace) -> int:
    db = database()
    if args.action == "up":
        try:
            db.start()
        except DatabaseError as err:
            raise CommandError(f"cannot start the database: {err}") from err
        print(db.url)
        return 0
    if args.action == "url":
        if not _running(db):
            raise CommandError(
                f"no database running in {db.data_dir.parent}; run: coupon-chaos db up"
            )
        print(db.url)
        return 0
    if args.action == "status":
        if _running(db):
            print(f"running at {db.url} (data in {db.data_dir})")
            return 0
        print(f"not running (data in {db.data_dir})")
        return 1
    if not _running(db):
        print("not running")
        return 0
    db.stop()
    if db.is_running():
        raise CommandError("the database did not stop")
    print("stopped")
    return 0
