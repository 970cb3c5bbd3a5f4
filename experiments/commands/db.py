"""``coupon-chaos db``: keep one embedded PostgreSQL running between commands.

Its cluster lives under $COUPON_CHAOS_HOME and is meant to outlive each command, so
it is not ephemeral: no owner record, no stop at exit, never reaped. ``db reap``
stops and deletes the temporary clusters (``EmbeddedPostgres.create()``) of
processes that died without stopping them.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from coupon_core import EmbeddedPostgres
from coupon_core.database import DatabaseError, reap_orphans
from experiments.errors import CommandError

NAME = "db"
HELP = (
    "start, stop or locate a long-lived embedded PostgreSQL (data in .coupon-chaos/db/); "
    "reap the temporary ones of dead processes"
)

_ACTIONS = ("up", "down", "url", "status", "reap")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "action",
        choices=_ACTIONS,
        help="up: start it and print its URL; down: stop it; "
        "url: print only its URL; status: say whether it runs (exit 1 when not); "
        "reap: stop and delete the temporary clusters whose owner process died",
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


def reap() -> int:
    reaped = reap_orphans()
    for path in reaped:
        print(f"reaped {path}")
    print(f"{len(reaped)} orphaned cluster{'' if len(reaped) == 1 else 's'} reaped")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.action == "reap":
        return reap()
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
