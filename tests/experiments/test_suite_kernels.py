"""WarmKernels with real kernels: the one started ahead is used, a dead one is replaced, none is left.

Each test starts real ipykernel processes (no preload, so each is up in about a second)
and reads their pids from the kernel's own answer or from its provisioner; that a
process is gone is read from the operating system (psutil), not from the manager.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from experiments.suite.kernels import WarmKernels, preload_line, release


def _pid(km: Any) -> int:
    pid = km.provisioner.pid
    assert isinstance(pid, int)
    return pid


def _ask(km: Any, code: str) -> str:
    """Run ``code`` in ``km``'s kernel and return what it printed."""
    client = km.blocking_client()
    client.start_channels()
    try:
        client.wait_for_ready(timeout=60)
        out: list[str] = []
        reply = client.execute_interactive(
            code, timeout=60, output_hook=lambda m: out.append(m["content"].get("text", ""))
        )
        assert reply["content"]["status"] == "ok", reply["content"]
        return "".join(out)
    finally:
        client.stop_channels()


def _gone(pid: int, within_s: float = 10.0) -> bool:
    """The process has ended (a zombie is reaped by its parent, the manager: gone too)."""
    end = time.monotonic() + within_s
    while time.monotonic() < end:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.slow  # real kernels: 2-6 s on a loaded machine
def test_the_kernel_started_ahead_is_the_one_a_notebook_takes(tmp_path: Path) -> None:
    # Plant: ``take`` launching a fresh kernel instead of popping the waiting one (or
    # ``fill`` starting none) gives another pid and taken_warm 0.
    warm = WarmKernels({"S22_MARK": "warm"}, tmp_path, depth=1, preload=("json",))
    try:
        warm.fill()
        assert warm.launched == 1
        ahead = _pid(warm._ready[0])
        km = warm.take()
        try:
            assert _pid(km) == ahead
            assert warm.taken_warm == 1
            # The next one is launched before take returns: it starts while this one runs.
            assert warm.launched == 2
            assert len(warm._ready) == 1
            # It is the run's kernel: our env, our folder, the preload imported, no name bound.
            said = _ask(
                km,
                "import os, sys\n"
                "print(os.getpid(), os.environ['S22_MARK'], os.getcwd(), 'json' in sys.modules,"
                " '__m' in dir())",
            )
            assert said.split() == [str(ahead), "warm", str(tmp_path), "True", "False"]
        finally:
            release(km)
        assert _gone(ahead)
    finally:
        warm.close()


@pytest.mark.slow  # real kernels: 2-6 s on a loaded machine
def test_a_waiting_kernel_that_died_is_replaced_not_handed_out(tmp_path: Path) -> None:
    # Plant: ``take`` popping the waiting kernel without asking whether it is alive (the
    # code before this test) hands out the dead one: its pid no longer answers.
    warm = WarmKernels({}, tmp_path, depth=1, preload=())
    try:
        warm.fill()
        dead = _pid(warm._ready[0])
        os.kill(dead, signal.SIGKILL)
        assert _gone(dead)
        km = warm.take()
        try:
            pid = _pid(km)
            assert pid != dead
            assert psutil.pid_exists(pid)
            assert _ask(km, "import os; print(os.getpid())").strip() == str(pid)
            assert warm.taken_warm == 0  # the dead one does not count as taken warm
        finally:
            release(km)
    finally:
        warm.close()


@pytest.mark.slow  # real kernels: 2-6 s on a loaded machine
def test_close_and_release_leave_no_kernel_process(tmp_path: Path) -> None:
    # Plant: ``close`` forgetting the waiting kernels (``self._ready = []`` without a
    # shutdown), or ``release`` skipping a kernel still up, leaves a live python3 child.
    me = psutil.Process()
    before = {p.pid for p in me.children(recursive=True)}
    warm = WarmKernels({}, tmp_path, depth=2, preload=())
    warm.fill()
    taken = warm.take()
    pids = [_pid(taken), *(_pid(km) for km in warm._ready)]
    assert len(set(pids)) == 3
    assert all(psutil.pid_exists(p) for p in pids)
    release(taken)
    warm.close()
    assert all(_gone(p) for p in pids), [p for p in pids if not _gone(p, 0)]
    left = {p.pid for p in me.children(recursive=True)} - before
    assert not [p for p in left if not _gone(p, 0)]
    # Closed: nothing more is launched, and a take says so.
    warm.fill()
    assert warm.launched == 3
    with pytest.raises(RuntimeError, match="closed"):
        warm.take()


def test_the_preload_line_binds_no_name() -> None:
    # Plant: a preload written as ``import experiments.report`` binds ``experiments``
    # in every notebook's namespace (a notebook that forgot its import would still run).
    namespace: dict[str, Any] = {}
    exec(preload_line(("json", "email.utils")), namespace)
    assert set(namespace) == {"__builtins__"}
