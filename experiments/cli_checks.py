"""What every command checks before any work: URLs, output folders, scenario names, layers.

Each check either returns the checked value or raises ``UsageError`` (exit 2, the
argument is wrong) or ``CommandError`` (exit 1, the argument is right but the world is
not: a database that does not answer); both from ``experiments.errors``. Messages are
one line and never quote a password: a URL is shown by host, port and database only.

The results folder is one place, whatever the working directory: ``--results DIR``,
else ``$COUPON_CHAOS_RESULTS``, else the project's own ``results/`` (beside its
``notebooks/``); see ``results_dir``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from urllib.parse import urlsplit

from experiments.errors import CommandError, UsageError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "DEFAULT_RESULTS",
    "RESULTS_ENV",
    "UsageError",
    "check_choices",
    "check_out_dir",
    "check_out_file",
    "check_reachable",
    "check_url",
    "database_url",
    "results_dir",
    "where",
]

#: One attempt, this long at most, before a run says the database does not answer.
CONNECT_TIMEOUT_S = 5


#: The environment variable that names the results folder.
RESULTS_ENV = "COUPON_CHAOS_RESULTS"
#: The results folder without --results or $COUPON_CHAOS_RESULTS: the project's own.
DEFAULT_RESULTS = Path(__file__).resolve().parents[1] / "results"


def results_dir(given: Path | None) -> Path:
    """The results folder: ``given`` (``--results``), else ``$COUPON_CHAOS_RESULTS``, else
    ``DEFAULT_RESULTS``; never the working directory's ``results/`` by accident."""
    if given is not None:
        return given
    env = os.environ.get(RESULTS_ENV)
    return Path(env) if env else DEFAULT_RESULTS


def check_url(url: str, source: str = "--database-url") -> str:
    """``url`` if psycopg can read it as a PostgreSQL URL or ``key=value`` conninfo."""
    from psycopg import conninfo

    scheme = url.split("://", 1)[0].lower() if "://" in url else ""
    if "://" in url and scheme not in ("postgresql", "postgres"):
        raise UsageError(
            f"{source}: not a PostgreSQL URL (scheme {scheme!r}; expected postgresql://...)"
        )
    if "://" not in url and "=" not in url:
        raise UsageError(
            f"{source}: not a PostgreSQL URL (expected postgresql://user@host:port/dbname)"
        )
    try:
        conninfo.conninfo_to_dict(url)
        if "://" in url:
            urlsplit(url).port  # noqa: B018 (a port that is no number raises here)
    except Exception:
        # The driver's message may quote the URL, password included: say it in our words.
        raise UsageError(
            f"{source}: not a PostgreSQL URL (expected postgresql://user@host:port/dbname)"
        ) from None
    return url


def where(url: str) -> str:
    """Host, port and database of ``url``, for messages: never its user or password."""
    from psycopg import conninfo

    try:
        parts = conninfo.conninfo_to_dict(url)
    except Exception:
        return "the given database"
    host = str(parts.get("host") or "localhost")
    port = str(parts.get("port") or "5432")
    name = parts.get("dbname")
    return f"{host}:{port}" + (f" (database {name})" if name else "")


def database_url(given: str | None, source: str = "--database-url") -> str | None:
    """The URL a command will use (``given``, else ``$DATABASE_URL``), checked; None: embedded."""
    if given:
        return check_url(given, source)
    env = os.environ.get("DATABASE_URL") or None
    return check_url(env, "DATABASE_URL") if env else None


def check_reachable(url: str, timeout_s: int = CONNECT_TIMEOUT_S) -> None:
    """One connection attempt within ``timeout_s``; a one-line CommandError when it fails."""
    import psycopg

    try:
        with psycopg.connect(url, connect_timeout=timeout_s, autocommit=True) as conn:
            conn.execute("SELECT 1")
    except psycopg.Error as err:
        raise CommandError(f"cannot reach the database at {where(url)}: {_reason(err)}") from None


def _reason(err: Exception) -> str:
    lines = [line.strip() for line in str(err).strip().splitlines() if line.strip()]
    # libpq's lines look like 'connection to server at "h" (addr), port p failed: why'.
    first = next((line for line in lines if "failed:" in line), lines[0] if lines else "")
    why = first.rsplit("failed:", 1)[-1].strip()
    if "password" in why.lower():
        return "authentication failed"
    return why[:160] or type(err).__name__


def _first_existing(path: Path) -> Path:
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path.cwd()


def check_out_dir(path: Path, option: str = "--results") -> Path:
    """``path`` if it is a folder we can write in, or one we can create: nothing is created."""
    path = path.expanduser()
    if path.exists() and not path.is_dir():
        raise UsageError(f"{option} {path}: exists and is not a folder")
    base = _first_existing(path)
    if not base.is_dir():
        raise UsageError(f"{option} {path}: {base} is not a folder")
    # A probe, not os.access: root passes os.access on read-only places such as /proc.
    try:
        fd, probe = tempfile.mkstemp(prefix=".coupon-chaos-probe-", dir=base)
    except OSError:
        raise UsageError(f"{option} {path}: {base} is not writable") from None
    os.close(fd)
    os.unlink(probe)
    return path


def check_out_file(path: Path, option: str) -> Path:
    """``path`` if a file can be written there: its folder exists or can be made, writable."""
    path = path.expanduser()
    if path.is_dir():
        raise UsageError(f"{option} {path}: is a folder, not a file")
    if path.exists() and not os.access(path, os.W_OK):
        raise UsageError(f"{option} {path}: is not writable")
    check_out_dir(path.parent, option)
    return path


def check_choices(values: Iterable[str], allowed: Sequence[str], what: str) -> list[str]:
    """``values`` if each is one of ``allowed``; else name the first stranger and the choices."""
    chosen = list(values)
    unknown = [v for v in chosen if v not in allowed]
    if unknown:
        raise UsageError(f"unknown {what} {unknown[0]!r}; choose from {', '.join(allowed)}")
    return chosen
