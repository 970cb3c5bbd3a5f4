"""The circuit breaker: while the database is unreachable, refuse at once instead of waiting.

Without it, every call during an outage waits the whole pool timeout (10 s by default)
for a connection the pool cannot open, then answers 503. With it::

    closed ──``threshold`` consecutive connection failures, confirmed by a probe──► open
    open ──a background probe connects (every ``probe_s``); the pool is checked──► half_open
    half_open ──the one trial call reaches the database──► closed
    half_open ──the trial call fails on its connection──► open

Open, every call fails at once (``allow()`` is False: the service raises
``Unavailable``, a 503). A connection failure is a connection lost or refused (an
``OperationalError`` that is not a statement or lock timeout), or the pool failing to
open a connection; a pool timeout alone is not one (an exhausted pool is not a dead
database), nor is any answer of the database, an error included. The breaker opens
only once a probe of its own confirms the database cannot be reached: a burst of
killed backends on a healthy database (the lab's ``connection_drop``) leaves it closed.

The probe is a plain connection (bounded by its connect timeout), made in one
daemon thread that lives while the breaker is confirming or open; ``close()`` ends it.

The log tells an outage in one WARNING line per change of state (open, half-open:
probing, closed), each with its reason; a failed probe is a DEBUG line. The pool's own
per-attempt lines are silenced for a pool that reports to a breaker
(``coupon_core.pool``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Literal

__all__ = ["CircuitBreaker", "Outcome", "State"]

log = logging.getLogger("coupon_core.breaker")

State = Literal["closed", "open", "half_open"]
#: What a call learnt: the database answered, the connection failed, or nothing
#: (a pool timeout, a caller's interrupt): no news changes no state.
Outcome = Literal["answered", "failed", "unknown"]

#: Low, since a probe confirms before the breaker opens: two failures in a row start one.
DEFAULT_THRESHOLD = 2
DEFAULT_PROBE_S = 0.1


class CircuitBreaker:
    """Closed, open or half-open; thread-safe, and free of locks on the closed path."""

    def __init__(
        self,
        probe: Callable[[], None],
        *,
        threshold: int = DEFAULT_THRESHOLD,
        probe_s: float = DEFAULT_PROBE_S,
        on_recover: Callable[[], None] | None = None,
    ) -> None:
        """``probe()`` raises unless the database accepts a connection now.

        ``on_recover()`` runs once a probe succeeds, before the trial call: the service
        has its pool drop the connections the outage broke, so the trial does not draw one.
        """
        if threshold < 1 or probe_s <= 0:
            raise ValueError(f"need threshold >= 1 and probe_s > 0: {threshold}, {probe_s}")
        self._probe = probe
        self.threshold = threshold
        self.probe_s = probe_s
        self.on_recover = on_recover
        self._lock = threading.Lock()
        self._state: State = "closed"
        self._failures = 0
        self._trial = False  # half-open: a trial call is in flight
        self._prober: threading.Thread | None = None
        self._probing = False  # under the lock: a prober runs (is_alive() would race its exit)
        # When a confirmation last found the database well: the next waits probe_s, so
        # a stream of failures on a healthy database (injected faults, killed backends)
        # costs at most one probe connection per probe_s.
        self._well_at = -float("inf")
        self._closed = threading.Event()
        #: Times each state was entered (monotonic s), for the lab's figures.
        self.opened_at: float | None = None
        self.closed_at: float | None = None
        self.opened = 0  # how many times it opened

    @property
    def state(self) -> State:
        return self._state

    @property
    def suspect(self) -> bool:
        """A connection failed since the database last answered (or the circuit is not closed).

        The service then waits for a pool connection in short slices, so a call that
        was already waiting when the circuit opened is refused too, not left to wait
        out the whole pool timeout.
        """
        return self._failures > 0 or self._state != "closed"

    def allow(self) -> bool:
        """Whether a call may go to the database now; a True in half-open is the trial."""
        if self._state == "closed":  # the hot path: one attribute read, no lock
            return True
        return self._allow_locked()

    def _allow_locked(self) -> bool:
        with self._lock:
            if self._state == "closed":
                return True
            if self._state == "half_open" and not self._trial:
                self._trial = True
                return True
            return False

    def record(self, outcome: Outcome) -> None:
        """What the call that ``allow()`` let through learnt about the database."""
        if outcome == "answered" and self._state == "closed" and not self._failures:
            return  # the hot path again
        self._record(outcome, call=True)

    def connect_failed(self) -> None:
        """The pool could not open a connection (its ``reconnect_failed`` callback)."""
        self._record("failed", call=False)

    def _record(self, outcome: Outcome, *, call: bool) -> None:
        start_probe = False
        with self._lock:
            # Half-open lets one call through: a call that ends now is the trial.
            trial = call and self._trial
            if trial:
                self._trial = False
            if outcome == "answered":
                self._failures = 0
                if self._state != "closed":
                    self._state = "closed"
                    self.closed_at = time.monotonic()
                    opened = self.opened_at if self.opened_at is not None else self.closed_at
                    log.warning(
                        "circuit closed: a call reached the database again (open %.2fs)",
                        self.closed_at - opened,
                    )
            elif outcome == "failed":
                self._failures += 1
                if self._state == "half_open" and trial:
                    self._open_locked("the trial call failed on its connection")
                    start_probe = True
                elif (
                    self._state == "closed"
                    and self._failures >= self.threshold
                    and time.monotonic() - self._well_at >= self.probe_s
                ):
                    start_probe = True  # confirm before opening
        if start_probe:
            self._start_prober()

    def close(self, timeout: float = 10.0) -> None:
        """Stop probing (the service is closing); waits for the prober thread."""
        self._closed.set()
        prober = self._prober
        if prober is not None:
            prober.join(timeout)

    # -- internals -----------------------------------------------------------------

    def _open_locked(self, reason: str) -> None:
        if self._state != "open":
            self._state = "open"
            self.opened += 1
            self.opened_at = time.monotonic()
            log.warning("circuit open: %s; calls refused at once", reason)

    def _start_prober(self) -> None:
        with self._lock:
            if self._closed.is_set() or self._probing:
                return
            self._probing = True
            self._prober = threading.Thread(
                target=self._probe_loop, name="breaker-probe", daemon=True
            )
            self._prober.start()

    def _probe_loop(self) -> None:
        # Confirming (closed) or open: probe now, then every probe_s, until the database
        # answers or the service closes. Each probe is bounded by its connect timeout.
        while not self._closed.is_set():
            try:
                self._probe()
            except Exception as err:  # unreachable: open (if it was not)
                with self._lock:
                    self._open_locked(
                        f"{self._failures} connection failures in a row and a probe"
                        f" could not connect ({type(err).__name__})"
                    )
                log.debug("probe failed: %s", type(err).__name__)
                if self._closed.wait(self.probe_s):
                    break
                continue
            self._recovered()
            return
        with self._lock:
            self._probing = False

    def _recovered(self) -> None:
        with self._lock:
            if self._state == "closed":  # a confirmation that found the database well
                self._failures = 0
                self._probing = False
                self._well_at = time.monotonic()
                return
        if self.on_recover is not None:
            try:
                self.on_recover()
            except Exception:  # the trial call will tell
                log.debug("on_recover failed", exc_info=True)
        with self._lock:
            # Set here, with the state, so a failed trial finds no prober and starts one.
            self._probing = False
            if self._state == "open":
                self._state = "half_open"
                self._trial = False
                log.warning("circuit half-open (probing): a probe connected; one trial call")
