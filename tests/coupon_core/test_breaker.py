"""The circuit breaker's states, driven by a probe whose answer the test sets.

The probe is the breaker's one input from the world (a callable that raises while the
database is unreachable); here it is a switch, so each transition can be forced. The
real outage, with a real database stopped and started, is in ``test_outage.py``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from coupon_core.breaker import CircuitBreaker

# Waits for the prober thread are bounded by this, never asserted against.
WAIT_S = 10.0


def state(b: CircuitBreaker) -> str:
    return b.state  # as a plain str: mypy would narrow the Literal across calls


class Switch:
    """A probe: raises while ``down``; counts its calls."""

    def __init__(self, down: bool) -> None:
        self.down = down
        self.calls = 0
        self.lock = threading.Lock()

    def __call__(self) -> None:
        with self.lock:
            self.calls += 1
        if self.down:
            raise ConnectionRefusedError("down")


def wait_for(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        assert time.monotonic() < deadline, f"not {what} within {WAIT_S}s"
        time.sleep(0.005)


def test_closed_lets_every_call_through() -> None:
    b = CircuitBreaker(Switch(down=False), threshold=2, probe_s=0.01)
    assert all(b.allow() for _ in range(100))
    b.record("answered")
    assert (state(b), b.suspect) == ("closed", False)


def test_failures_confirmed_by_a_probe_open_it() -> None:
    probe = Switch(down=True)
    b = CircuitBreaker(probe, threshold=2, probe_s=0.01)
    b.record("failed")
    assert state(b) == "closed"
    assert b.suspect  # one failure: calls wait in slices from now on
    b.record("failed")
    wait_for(lambda: state(b) == "open", "open")
    assert not b.allow()
    assert b.opened == 1
    b.close()


def test_a_probe_that_connects_keeps_it_closed() -> None:
    # Killed backends on a healthy database: failures, but the database answers.
    probe = Switch(down=False)
    b = CircuitBreaker(probe, threshold=2, probe_s=0.01)
    for _ in range(5):
        b.record("failed")
    wait_for(lambda: probe.calls >= 1 and not b.suspect, "cleared")
    assert state(b) == "closed"
    assert b.opened == 0
    b.close()


def test_no_news_changes_nothing() -> None:
    b = CircuitBreaker(Switch(down=True), threshold=1, probe_s=0.01)
    for _ in range(10):
        b.record("unknown")  # a pool timeout: an exhausted pool is not a dead database
    assert (state(b), b.suspect) == ("closed", False)


def test_half_open_lets_one_trial_through_then_closes() -> None:
    probe = Switch(down=True)
    recovered = threading.Event()
    b = CircuitBreaker(probe, threshold=1, probe_s=0.01, on_recover=recovered.set)
    b.record("failed")
    wait_for(lambda: state(b) == "open", "open")
    probe.down = False
    wait_for(lambda: state(b) == "half_open", "half-open")
    assert recovered.is_set()  # the pool is checked before the trial
    assert b.allow()  # the trial
    assert not b.allow()  # everyone else: refused while it runs
    b.record("answered")
    assert state(b) == "closed"
    assert b.allow()
    b.close()


def test_a_failed_trial_opens_it_again_and_probing_resumes() -> None:
    probe = Switch(down=True)
    b = CircuitBreaker(probe, threshold=1, probe_s=0.01)
    b.record("failed")
    wait_for(lambda: state(b) == "open", "open")
    for _ in range(3):  # the prober must restart every time, whatever its timing
        probe.down = False
        wait_for(lambda: state(b) == "half_open", "half-open")
        probe.down = True
        assert b.allow()
        b.record("failed")
        assert state(b) == "open"
        calls = probe.calls
        wait_for(lambda c=calls: probe.calls > c, "probing again")  # type: ignore[misc]
    probe.down = False
    wait_for(lambda: state(b) == "half_open", "half-open")
    assert b.allow()
    b.record("answered")
    assert state(b) == "closed"
    assert b.opened == 4
    b.close()


def test_pool_connect_failures_count_but_are_no_trial() -> None:
    probe = Switch(down=True)
    b = CircuitBreaker(probe, threshold=2, probe_s=0.01)
    b.connect_failed()
    b.connect_failed()
    wait_for(lambda: state(b) == "open", "open")
    probe.down = False
    wait_for(lambda: state(b) == "half_open", "half-open")
    assert b.allow()
    b.connect_failed()  # the pool's, not the trial's: the trial is still in flight
    assert state(b) == "half_open"
    assert not b.allow()
    b.record("answered")
    assert state(b) == "closed"
    b.close()


def test_close_stops_the_prober() -> None:
    b = CircuitBreaker(Switch(down=True), threshold=1, probe_s=0.01)
    b.record("failed")
    wait_for(lambda: state(b) == "open", "open")
    b.close()
    assert not any(t.name == "breaker-probe" for t in threading.enumerate())


@pytest.mark.parametrize(("threshold", "probe_s"), [(0, 0.1), (1, 0.0), (2, -1.0)])
def test_bad_settings_are_refused(threshold: int, probe_s: float) -> None:
    with pytest.raises(ValueError, match="threshold"):
        CircuitBreaker(Switch(down=False), threshold=threshold, probe_s=probe_s)
