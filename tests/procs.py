"""Process helpers for the tests that watch a server's worker processes through /proc."""

from __future__ import annotations

from pathlib import Path

__all__ = ["children"]


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
