"""Checks: judge a history and the final state of the tables, one named verdict each.

As in Jepsen, a check answers pass, fail or unknown: a check that crashes gives
``passed=None`` (unknown), never a pass; one that meets a history the contract cannot
produce (two successful creates of one name) fails with that as its reason. The final
state is read from the tables with plain SQL, like any client, filtered by the run's
coupon prefix so runs can share one database.

    state       FinalState, read_state: the run's rows
    invariants  conservation, one claim per user, no orphan, no negative stock
    history     statuses, server errors, driver text, the contract, timeouts, reads,
                acknowledged claims against the rows
    expect      a scenario's figures from its plan: counts, stock, rows, result sets
    order       one coupon created while it is claimed
    validity    the experiment itself: did the stampede collide
    registry    every check by name (CHECKS), the shared sets (SHARED), always_on
"""

from __future__ import annotations

from experiments.checks._compose import ImpossibleHistory, check
from experiments.checks.expect import (
    at_least,
    expected_counts,
    remaining_equals,
    results_within,
    rows_equal,
    state_equals,
)
from experiments.checks.history import (
    ALLOWED_RESULTS,
    ALLOWED_STATUSES,
    DRIVER_TEXT,
    claims_match_history,
    contract_kept,
    gets_consistent,
    no_driver_text,
    no_server_errors,
    no_timeouts,
    statuses_allowed,
)
from experiments.checks.invariants import (
    conservation,
    created_amounts,
    no_negative_stock,
    no_orphan_claims,
    one_claim_per_user,
)
from experiments.checks.order import (
    create_winner,
    creates_won,
    no_not_found_after_create,
    no_success_before_create,
)
from experiments.checks.registry import CHECKS, INVARIANTS, SHARED, Shared, always_on, describe
from experiments.checks.state import FinalState, like_prefix, read_state
from experiments.checks.validity import COLLIDED_SHARE, stampede_collided

__all__ = [
    "ALLOWED_RESULTS",
    "ALLOWED_STATUSES",
    "CHECKS",
    "COLLIDED_SHARE",
    "DRIVER_TEXT",
    "INVARIANTS",
    "SHARED",
    "FinalState",
    "ImpossibleHistory",
    "Shared",
    "always_on",
    "at_least",
    "check",
    "claims_match_history",
    "conservation",
    "contract_kept",
    "create_winner",
    "created_amounts",
    "creates_won",
    "describe",
    "expected_counts",
    "gets_consistent",
    "like_prefix",
    "no_driver_text",
    "no_negative_stock",
    "no_not_found_after_create",
    "no_orphan_claims",
    "no_server_errors",
    "no_success_before_create",
    "no_timeouts",
    "one_claim_per_user",
    "read_state",
    "remaining_equals",
    "results_within",
    "rows_equal",
    "stampede_collided",
    "state_equals",
    "statuses_allowed",
]
