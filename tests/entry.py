"""The installed ``coupon-chaos`` script, run in a folder of its own: its path, a call, the
folder's contents (to show a refused command wrote nothing)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

__all__ = ["ENTRY", "cli", "tree"]

SCRIPT = Path(sys.executable).parent / "coupon-chaos"
ENTRY = str(SCRIPT) if SCRIPT.exists() else (shutil.which("coupon-chaos") or str(SCRIPT))


def cli(
    folder: Path, *args: str, timeout: float, home: str | None = None, **env: str
) -> subprocess.CompletedProcess[str]:
    """``coupon-chaos args`` in ``folder``, output captured, with no ``DATABASE_URL`` but
    what ``env`` gives; its results go to ``folder/results`` and, if ``home`` is given,
    its home (embedded databases) to ``folder/home``."""
    environ = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    if home is not None:
        environ["COUPON_CHAOS_HOME"] = str(folder / home)
    # The results folder is the project's unless told: these runs keep theirs in folder.
    environ["COUPON_CHAOS_RESULTS"] = str(folder / "results")
    environ.update(env)
    return subprocess.run(
        [ENTRY, *args], capture_output=True, text=True, timeout=timeout, env=environ, cwd=folder
    )


def tree(folder: Path) -> set[str]:
    """Every path below ``folder``, relative to it."""
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}
