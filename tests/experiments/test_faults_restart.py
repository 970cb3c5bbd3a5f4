"""Restarting the real database under a service: acknowledged claims survive, it recovers.

The restart is the ``outage`` fixture's (tests/fix_restart.py), on a cluster of the
test's own: the session's database stays up, and the test runs when that one is
given by URL too (it skipped then).
"""

from __future__ import annotations

import time

import psycopg
import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.database import ExternalDatabase
from coupon_core.errors import Unavailable
from experiments.faults import DatabaseRestart, restart_skip_reason, time_to_recover
from tests.fix_restart import Outage


def test_a_database_by_url_is_not_restartable() -> None:
    reason = restart_skip_reason(ExternalDatabase("postgresql://x@127.0.0.1:1/x"))
    assert reason is not None
    assert "given by URL" in reason
    with pytest.raises(RuntimeError, match="cannot be restarted"):
        DatabaseRestart(ExternalDatabase("postgresql://x@127.0.0.1:1/x"))


@pytest.mark.chaos
@pytest.mark.slow
def test_restart_during_claims_loses_nothing_acknowledged(outage: Outage, unique: str) -> None:
    coupon = f"{unique}-c"
    cfg = ServiceConfig(pool_min=2, pool_timeout=1.0, application_name=f"svc-{unique}")
    acked: list[str] = []
    failed = 0
    with CouponService.connect(outage.url, cfg) as svc:
        svc.create(coupon, 500)
        with outage.restart(delay_s=0.2, down_s=0.8) as r:
            deadline = time.monotonic() + 20
            i = 0
            while time.monotonic() < deadline and not (
                r.wait(0) and len(acked) > i // 2 and i > 60
            ):
                try:
                    svc.claim(f"u{i}", coupon)
                    acked.append(f"u{i}")
                except Unavailable:
                    failed += 1
                i += 1
                time.sleep(0.005)
        assert r.started_s is not None
        assert failed > 0, "the restart did not disturb a single claim"
        recovery = time_to_recover(lambda: svc.health()[0], timeout_s=30)
        assert recovery is not None
    with psycopg.connect(outage.url, autocommit=True) as conn:
        rows = {
            str(r[0])
            for r in conn.execute("SELECT user_id FROM claims WHERE coupon_name = %s", (coupon,))
        }
        remaining = conn.execute(
            "SELECT remaining_amount FROM coupons WHERE name = %s", (coupon,)
        ).fetchone()
    assert set(acked) <= rows  # nothing acknowledged is lost
    assert remaining == (500 - len(rows),)  # and nothing half-done


@pytest.mark.slow
def test_an_outage_whose_database_stayed_up_fails(
    outage: Outage, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A planted stop that does nothing: the fixture does not let a test go on as if
    the database were down."""
    monkeypatch.setattr(outage.database, "stop", lambda mode="fast": None)
    with pytest.raises(AssertionError, match="the database did not stop"):
        outage.stop()
    monkeypatch.undo()
    outage.stop()
    outage.start()
    with psycopg.connect(outage.url, autocommit=True, connect_timeout=5) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
