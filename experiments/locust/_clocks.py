"""Clock offsets of Locust workers to the master, estimated by round trips, with their uncertainty.

Clocks of different processes (machines) disagree. The master sends a ping at ``t0``
on its clock, the worker answers with its own clock ``tw``, the answer arrives at
``t1``. The worker read ``tw`` somewhere between ``t0`` and ``t1`` (causality), so its
offset to the master lies in ``[tw - t1, tw - t0]``: ``tw - (t0 + t1) / 2`` with an
uncertainty of half the round trip, whatever the delays on the way (as NTP reasons).
The round with the shortest trip gives the tightest bound.

Measured before the run and again after it, two estimates bound a clock that drifted
or stepped in between: the midpoint, widened by half their difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["ClockEstimate", "Sample", "combine", "estimate"]

#: One round trip: master send time, worker clock, master receive time (ns).
Sample = tuple[int, int, int]


@dataclass(frozen=True, slots=True)
class ClockEstimate:
    """``worker clock - master clock`` in ns, true within ``offset_ns ± uncertainty_ns``."""

    offset_ns: int
    uncertainty_ns: int
    #: The round trip behind the estimate (the shortest of ``samples``).
    rtt_ns: int
    samples: int

    def to_master(self, worker_ns: int) -> int:
        """A worker clock reading placed on the master's clock."""
        return worker_ns - self.offset_ns

    def to_dict(self) -> dict[str, float | int]:
        return {
            "offset_ms": round(self.offset_ns / 1e6, 3),
            "uncertainty_ms": round(self.uncertainty_ns / 1e6, 3),
            "rtt_ms": round(self.rtt_ns / 1e6, 3),
            "samples": self.samples,
        }


def estimate(samples: Sequence[Sample]) -> ClockEstimate:
    """The offset from the round trip with the shortest trip; ``ValueError`` without any."""
    valid = [(t0, tw, t1) for t0, tw, t1 in samples if t1 >= t0]
    if not valid:
        raise ValueError("no clock round trip to estimate an offset from")
    t0, tw, t1 = min(valid, key=lambda s: s[2] - s[0])
    rtt = t1 - t0
    # Integer halves rounded outwards: the bound must contain [tw - t1, tw - t0].
    low, high = tw - t1, tw - t0
    offset = (low + high) // 2
    return ClockEstimate(
        offset_ns=offset,
        uncertainty_ns=max(offset - low, high - offset),
        rtt_ns=rtt,
        samples=len(valid),
    )


def combine(before: ClockEstimate, after: ClockEstimate | None) -> ClockEstimate:
    """One estimate for the whole run from the estimates before and after it.

    The true offset at any instant of the run is assumed to lie between the two
    (a drift or a step in between); the result's interval covers both intervals.
    """
    if after is None:
        return before
    low = min(before.offset_ns - before.uncertainty_ns, after.offset_ns - after.uncertainty_ns)
    high = max(before.offset_ns + before.uncertainty_ns, after.offset_ns + after.uncertainty_ns)
    offset = (low + high) // 2
    return ClockEstimate(
        offset_ns=offset,
        uncertainty_ns=max(offset - low, high - offset),
        rtt_ns=max(before.rtt_ns, after.rtt_ns),
        samples=before.samples + after.samples,
    )
