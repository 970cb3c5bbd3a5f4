"""Process helpers for the tests that start ``serve``: wait for it to answer, find its workers."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

__all__ = ["children", "wait_serving"]


def children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid``, from /proc."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # The fields after the command name, which may itself hold spaces or ")".
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError):  # gone meanwhile
            continue
        if int(ppid) == pid and state != "Z":
            found.append(int(stat.parent.name))
    return sorted(found)


def wait_serving(proc: subprocess.Popen[str], url: str, bound_s: float) -> None:
    """Until ``url``'s /health answers 200; fails if ``proc`` exits or ``bound_s`` passes."""
    deadline = time.monotonic() + bound_s
    while True:
        assert proc.poll() is None, f"serve exited: {proc.communicate()}"
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "serve did not come up"
        time.sleep(0.1)
