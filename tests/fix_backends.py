"""The backend-kill fault as a fixture: the database backends of one test's service.

A test opens its service with ``backends.connect(...)``, so the service's connections
carry ``backends.application_name`` (unique to the test), then kills them: at once
with ``backends.kill()`` (pg_terminate_backend, waited for), in the middle of a claim
with ``backends.kill_mid_claim()``, or round after round with ``backends.killer()``
(the lab's ``BackendKiller``). Every wait is bounded. After the test the fixture stops
its killers, closes its services and terminates any connection of that name still
open, so a failed test leaks no backend into the next. Loaded for every test by
``pytest_plugins`` in the top-level ``conftest.py``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from coupon_core import CouponService, ServiceConfig
from experiments.faults import BackendKiller, ClaimPause, backend_pids, terminate_backends

__all__ = ["Backends", "MidClaimKill", "backends"]

# A claim paused after its insert, its kill and its end: each well under this on a
# loaded 2-core machine (pg_terminate_backend waits at most 5 s per backend).
MID_CLAIM_BOUND_S = 10.0


@dataclass(frozen=True)
class MidClaimKill:
    """What ``Backends.kill_mid_claim`` saw."""

    #: The service's backends "idle in transaction" while the claim was paused: its own.
    paused: list[int]
    #: The backends terminated (those "idle in transaction" at the kill).
    killed: list[int]
    #: What the claim raised once released (None: it returned).
    error: BaseException | None


@dataclass
class Backends:
    """The backends named ``application_name`` on ``url``: to list, and to kill."""

    url: str
    application_name: str
    _services: list[CouponService] = field(default_factory=list, repr=False)
    _killers: list[BackendKiller] = field(default_factory=list, repr=False)

    def connect(self, **config: Any) -> CouponService:
        """A service whose connections carry this name (``ServiceConfig`` fields as keywords)."""
        svc = CouponService.connect(
            self.url, ServiceConfig(application_name=self.application_name, **config)
        )
        self._services.append(svc)
        return svc

    def pids(self, state: str | None = None) -> list[int]:
        """Pids of the live backends of this name (optionally in one ``state``)."""
        return backend_pids(self.url, self.application_name, state=state)

    def kill(self, state: str | None = None) -> list[int]:
        """Terminate them (those in ``state``), each waited for; the pids terminated."""
        return terminate_backends(self.url, self.application_name, state=state)

    def killer(self, **options: Any) -> BackendKiller:
        """A BackendKiller of this name, not started (``with`` starts it); stopped after the test."""
        k = BackendKiller(self.url, self.application_name, **options)
        self._killers.append(k)
        return k

    def kill_mid_claim(
        self, svc: CouponService, user: str, coupon: str, bound_s: float = MID_CLAIM_BOUND_S
    ) -> MidClaimKill:
        """Claim in a thread, park it after its insert (lock held, nothing committed), kill
        the backends idle in a transaction, then let the claim go on to find its
        connection gone. ``svc`` must be one of ``connect()``'s."""
        pause = ClaimPause(max_pause_s=bound_s)
        previous, svc.fault = svc.fault, pause
        out: list[BaseException | None] = []

        def claim() -> None:
            try:
                svc.claim(user, coupon)
                out.append(None)
            except BaseException as err:  # the outcome under test, kept for the caller
                out.append(err)

        t = threading.Thread(target=claim, name="claim-to-kill", daemon=True)
        t.start()
        try:
            assert pause.wait_paused(bound_s), "the claim never reached after_insert"
            paused = self.pids(state="idle in transaction")
            killed = self.kill(state="idle in transaction")
        finally:
            pause.release()
            t.join(bound_s)
            svc.fault = previous
        assert not t.is_alive(), f"the claim did not end within {bound_s}s of its kill"
        return MidClaimKill(paused, killed, out[0])

    def close(self) -> None:
        """Stop the killers, close the services, terminate what is left of this name."""
        for k in self._killers:
            k.stop()
        for svc in self._services:
            svc.close()
        terminate_backends(self.url, self.application_name)


@pytest.fixture
def backends(db_url: str, unique: str) -> Iterator[Backends]:
    """The backends named ``svc-<unique>`` on the session's database."""
    b = Backends(db_url, f"svc-{unique}")
    try:
        yield b
    finally:
        b.close()
