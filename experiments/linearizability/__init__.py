"""A linearizability checker for coupon histories: Wing-Gong/Lowe search, one coupon at a time.

The question: is there one total order of the operations, consistent with real time
(an op that completed before another was invoked comes first), in which each op's
outcome is what the sequential coupon service returns? Coupons are independent, so
each coupon's ops are checked on their own (P-compositionality, as in Porcupine).

A failure names the coupon and a small core of ops. Past the time limit the verdict
is unknown (``passed=None``), never a pass; so is it for ops timed on process clocks
(``clocks=``) whose uncertainty is past ``MAX_CLOCK_UNCERTAINTY_MS``.

    _model      the sequential coupon model, and ops in the form the search reads
    _precheck   contradictions found by counting, before any search
    _search     Lowe's variant of the Wing-Gong search over one coupon's ops
    _shrink     a failure cut down to a small core of ops that still fails
    _check      check_linearizable and started_ops: the verdict over a history
    _simulate   simulate_history: linearizable histories for tests and benchmarks
"""

from __future__ import annotations

from experiments.linearizability._check import (
    CHECK_NAME,
    LINEARIZABLE_TIME_LIMIT_S,
    MAX_CLOCK_UNCERTAINTY_MS,
    check_linearizable,
    started_ops,
)
from experiments.linearizability._simulate import simulate_history

__all__ = [
    "CHECK_NAME",
    "LINEARIZABLE_TIME_LIMIT_S",
    "MAX_CLOCK_UNCERTAINTY_MS",
    "check_linearizable",
    "simulate_history",
    "started_ops",
]
