"""Process and thread helpers for tests: wait for ``serve`` to answer, find its workers,
release a stampede of threads at once."""

from __future__ import annotations

import subprocess
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx

from coupon_core import CouponError

__all__ = ["children", "stampede", "wait_serving"]


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


def stampede(n: int, call: Callable[[int], None], *, bound_s: float) -> Counter[str]:
    """Run ``call(i)`` in ``n`` threads released at once; count outcomes by error kind.

    ``bound_s`` bounds the barrier and each thread's join; a thread still running
    after it fails the test.
    """
    barrier = threading.Barrier(n, timeout=bound_s)
    outcomes: list[str] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        barrier.wait()
        try:
            call(i)
            kind = "ok"
        except CouponError as err:
            kind = err.kind
        except Exception as err:  # recorded, so the assertion shows what escaped
            kind = f"unexpected {type(err).__name__}: {err}"
        with lock:
            outcomes.append(kind)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(bound_s)
    assert not any(t.is_alive() for t in threads), "a claim thread did not finish"
    return Counter(outcomes)
