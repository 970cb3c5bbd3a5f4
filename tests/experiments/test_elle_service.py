"""The checker on histories the real service wrote: the multi-read's two variants."""

from __future__ import annotations

import threading

from coupon_core import CouponService
from experiments.elle import Append, Read, Txn, check_history


def _history(db_url: str, unique: str, multi_read: str) -> list[Txn]:
    """A bundle claim committed between the two reads of a dashboard (when the read has
    a point between statements), recorded as list-append txns on ``claimed_by``."""
    a, b = f"{unique}-a", f"{unique}-b"
    with (
        CouponService.connect(db_url, pool_max=4) as svc,
        CouponService.connect(db_url, pool_max=4) as other,
    ):
        svc.create(a, 5)
        svc.create(b, 5)
        done = threading.Event()

        def fault(point: str) -> None:
            if point == "between_reads" and not done.is_set():
                done.set()
                other.claim_bundle("u1", [a, b])

        svc.fault = fault
        views = svc.get_many([a, b], multi_read=multi_read)
        if not done.is_set():  # the snapshot read: the bundle comes after it
            other.claim_bundle("u1", [a, b])
        final = svc.get_many([a, b])
    return [
        Txn(1, (Append(a, "u1"), Append(b, "u1")), "ok", 1, 0, 0),
        Txn(2, tuple(Read(v.name, tuple(v.claimed_by)) for v in views), "ok", 2, 0, 0),
        Txn(3, tuple(Read(v.name, tuple(v.claimed_by)) for v in final), "ok", 2, 0, 0),
    ]


def test_per_statement_read_is_read_skew(db_url: str, unique: str) -> None:
    v = check_history(_history(db_url, unique, "per_statement"))
    assert v.passed is False
    assert v.figures["anomaly_types"] == ["G-single"]


def test_snapshot_read_is_serializable(db_url: str, unique: str) -> None:
    v = check_history(_history(db_url, unique, "snapshot"))
    assert v.passed is True, v.detail
