"""A proxy timetable measured against a baseline starts once the baseline exists."""

from __future__ import annotations

import threading
import time

import pytest

from experiments.faults.proxy import TcpProxy
from experiments.faults.schedule import ProxySchedule, Step


def _schedule(begin: threading.Event | None, within_s: float) -> ProxySchedule:
    # Never started: set_phase only switches the proxy's state and its windows.
    proxy = TcpProxy("127.0.0.1", 1)
    return ProxySchedule(
        proxy,
        [Step("pass", 0.05), Step("latency", 0.05, {"latency_s": 0.01})],
        begin_when=begin.is_set if begin is not None else None,
        begin_within_s=within_s,
    )


def test_the_timetable_waits_for_its_baseline() -> None:
    # Before: the first fault window opened 0.05 s after start(), whatever the load did;
    # a load released later (a busy machine) had no op before it.
    baseline = threading.Event()
    sched = _schedule(baseline, within_s=10.0).start()
    time.sleep(0.3)
    assert sched.proxy.windows.windows == []  # no fault phase yet: no baseline yet
    released = time.monotonic_ns()
    baseline.set()
    assert sched.done.wait(5.0)
    (latency,) = sched.proxy.windows.windows
    assert latency.phase == "latency"
    assert latency.start_ns >= released + int(0.05 * 1e9)  # the pass step came after it
    assert sched.begun_on_time is True
    verdict = sched.ran_as_planned()
    assert verdict.name == "schedule_ran"
    assert verdict.passed is True, verdict.detail


def test_a_baseline_that_never_comes_is_said() -> None:
    sched = _schedule(threading.Event(), within_s=0.1).start()
    assert sched.done.wait(5.0)
    assert sched.begun_on_time is False
    assert [w.phase for w in sched.proxy.windows.windows] == ["latency"]
    assert sched.bound_s == 0.1 + 0.05 + 0.05


def test_a_timetable_begun_without_its_baseline_fails_its_verdict() -> None:
    # Before: ``begun_on_time`` was recorded and no verdict read it; network_faults'
    # schedule_ran compared the phases only, and they all ran (the timetable starts
    # anyway once its wait is over): it passed.
    sched = _schedule(threading.Event(), within_s=0.1).start()
    assert sched.done.wait(5.0)
    verdict = sched.ran_as_planned()
    assert verdict.passed is False
    assert "baseline never came within 0.1 s" in verdict.detail
    assert verdict.figures["begun_on_time"] is False
    # The phases themselves ran as planned: only the baseline fails it.
    assert verdict.figures["windows"] == [("latency", pytest.approx(0.05, abs=0.04))]


def test_a_timetable_stopped_before_its_baseline_fails_its_verdict() -> None:
    sched = _schedule(threading.Event(), within_s=10.0).start()
    sched.stop()
    assert sched.done.is_set()
    verdict = sched.ran_as_planned()
    assert verdict.passed is False
    assert "never began" in verdict.detail
    assert sched.proxy.windows.windows == []


def test_a_timetable_cut_short_fails_its_verdict() -> None:
    # No baseline to wait for: the verdict is the phases' alone.
    sched = ProxySchedule(
        TcpProxy("127.0.0.1", 1),
        [Step("pass", 0.05), Step("latency", 0.05, {"latency_s": 0.01}), Step("stall", 0.05)],
    ).start()
    time.sleep(0.02)  # still in its first (pass) step
    sched.stop()
    verdict = sched.ran_as_planned()
    assert verdict.passed is False
    assert verdict.figures["planned"] == [("latency", 0.05), ("stall", 0.05)]


def test_without_a_condition_the_timetable_starts_at_once() -> None:
    sched = _schedule(None, within_s=10.0)
    started = time.monotonic()
    sched.start()
    assert sched.done.wait(5.0)
    assert time.monotonic() - started < 2.0
    assert sched.begun_on_time is None
    assert sched.ran_as_planned().passed is True
