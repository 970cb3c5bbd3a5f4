"""Clock offsets by round trips: the bound holds whatever the delays on the way."""

from __future__ import annotations

import random

import pytest

from experiments.locust import ClockEstimate, combine, estimate


def _round_trip(offset: int, there: int, back: int, at: int = 1_000_000) -> tuple[int, int, int]:
    """Master sends at ``at``; the worker reads its clock ``there`` ns later; back ``back`` ns later."""
    return (at, at + there + offset, at + there + back)


def test_the_true_offset_lies_within_the_uncertainty_for_any_delays() -> None:
    rng = random.Random(7)
    for _ in range(500):
        offset = rng.randint(-(10**12), 10**12)
        samples = [
            _round_trip(
                offset, rng.randint(0, 10**7), rng.randint(0, 10**7), at=rng.randint(0, 10**9)
            )
            for _ in range(rng.randint(1, 8))
        ]
        est = estimate(samples)
        assert abs(est.offset_ns - offset) <= est.uncertainty_ns


def test_the_shortest_round_trip_gives_the_estimate() -> None:
    slow = _round_trip(5_000, there=9_000, back=1_000)  # asymmetric and slow
    fast = _round_trip(5_000, there=100, back=100)
    est = estimate([slow, fast, slow])
    assert est.rtt_ns == 200
    assert est.uncertainty_ns == 100
    assert est.offset_ns == 5_000
    assert est.samples == 3


def test_no_round_trip_is_an_error() -> None:
    with pytest.raises(ValueError, match="no clock round trip"):
        estimate([])


def test_a_step_between_before_and_after_is_covered() -> None:
    before = ClockEstimate(offset_ns=0, uncertainty_ns=100, rtt_ns=200, samples=8)
    after = ClockEstimate(offset_ns=-10_000, uncertainty_ns=50, rtt_ns=100, samples=8)
    both = combine(before, after)
    for true in (0, -10_000, -5_000, 100, -10_050):
        assert abs(both.offset_ns - true) <= both.uncertainty_ns
    assert both.uncertainty_ns >= 5_000
    assert combine(before, None) == before
