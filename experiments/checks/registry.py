"""The check registry: every check the lab can return, by name, and the sets runs share.

One mapping, ``CHECKS``: name -> what it judges. The shared sets (``SHARED``) are
composed from it by name, and ``always_on`` runs the invariants in that order; each
scenario declares its own checks' names (its module's ``CHECKS``) and the scenario
registry holds every run to exactly its declared set (``Scenario.checks``). ``coupon-
chaos list``, the generated notebooks' assertion cells and the report take their names
from here. Names are unique within a Result.
"""

from __future__ import annotations

from typing import Literal

from experiments.checks.history import (
    claims_match_history,
    contract_kept,
    no_driver_text,
    no_server_errors,
    no_timeouts,
    statuses_allowed,
)
from experiments.checks.invariants import (
    conservation,
    no_negative_stock,
    no_orphan_claims,
    one_claim_per_user,
)
from experiments.checks.state import FinalState
from experiments.history import History
from experiments.result import Verdict

__all__ = ["CHECKS", "INVARIANTS", "SHARED", "Shared", "always_on", "describe"]

#: Every check by name, and what it judges. A scenario's own checks are here too.
CHECKS: dict[str, str] = {
    # the invariants of every run, in the order ``always_on`` runs them
    "conservation": "for every coupon, amount = remaining_amount + its claim rows",
    "one_claim_per_user": "no user holds two claims on one coupon",
    "no_orphan_claims": "every claim row has its coupon",
    "no_negative_stock": "0 <= remaining_amount <= amount everywhere",
    "claims_match_history": "acknowledged claims equal the claim rows (indeterminate ones may)",
    "statuses_allowed": "every result and HTTP status within its operation's allowed set",
    "contract_kept": "every HTTP answer is the contract's (status, content type, body)",
    "no_server_errors": "no 5xx; 503 only where a fault allows it",
    "no_driver_text": "no driver or SQL text in any answer",
    "no_timeouts": "no op timed out or lost its connection",
    "linearizable": "the history has a linearization on the model of the service",
    "no_leaks": "no thread, pooled or database connection left behind",
    "recovered": "the service is healthy again after the faults ended",
    # validity: the experiment, not the system
    "stampede_collided": "the stampede collided: at least half the workers in flight at once",
    "stampede_contended": "the stampede reached the database: a service backend waited on a lock",
    # expectations from the plan
    "claim_counts": "the claims ended exactly as the plan's figures say",
    "final_stock": "the coupon's remaining stock is the plan's figure",
    "claim_rows": "the coupon's claim rows are the plan's figure",
    "create_counts": "one create won, every other was told the name is taken",
    "claim_results": "every claim ended in the set the scenario allows",
    "get_results": "every get ended in the set the scenario allows",
    "gets_consistent": "every read is consistent: remaining + claimers = amount",
    "creates_collided": "the plan's create of an existing name was told it exists",
    "claims_after_create_succeed": "claims invoked after the create completed succeeded",
    "final_stock_within_plan": "remaining stock within what the plan's claims allow",
    "no_success_before_create": "no claim succeeded before its coupon's create began",
    "no_not_found_after_create": "no 'not found' after the coupon's create completed",
    "claim_counts_sequential": "the sequential coupon's claims ended as the plan says",
    "final_stock_sequential": "the sequential coupon's remaining stock is the plan's",
    "check_rejects_negative": "the CHECK constraint refuses a decrement below zero",
    # faults
    "exhaustion_observed": "ops were refused while every pooled connection was held",
    "unavailable_only_when_exhausted": "each refusal met a pool with no idle connection",
    "refusals_fast": "refusals answer within the pool timeout + 1 s",
    "lock_taken": "the nemesis held the coupon's row lock",
    "timeouts_observed": "claims timed out behind the lock",
    "no_success_while_locked": "no claim succeeded while the row was locked",
    "timeouts_bounded": "timed-out claims took no longer than the timeout + 1 s",
    "slow_query_cancelled": "a query past the statement timeout was cancelled",
    "backends_killed": "the nemesis killed the service's backends",
    "outage_observed": "ops were refused while the database was down",
    "service_recovered_in_bound": "a claim invoked after the fault ended succeeded within the bound",
    "ops_bounded": "every op ended within its timeout + 2 s",
    "outage_answers_fast": "refusals during the outage were fast",
    "no_partial_claim": "no claim row without its decrement, or the reverse",
    "failures_are_the_injected_ones": "every failed claim is one the fault failed",
    "fault_injected": "the fault failed claims between insert and decrement",
    "waiters_cancelled": "lock waiters were cancelled",
    "waiters_succeed_after_release": "claims that waited on the lock succeeded after it",
    "latency_applied": "the proxy's latency showed in the ops' latency",
    "reset_cut_connections": "the proxy's reset cut live connections and the ops that met it",
    "schedule_ran": "the proxy began on its baseline and went through every planned phase, each for its planned time",
    "throttle_applied": "ops in the throttle phase were slower by the proxy's pace",
    "stall_held": "ops met the stall and none completed while it held",
    "nemesis_ran": "the nemesis did what the plan says",
    "failures_only_from_kills": "every failed op overlaps a kill or the rolling restart",
    "workers_restarted": "every killed worker was replaced",
    "dead_backends_gone": "the killed workers' backends (some watched) ended within the bound",
    "kills_cut_claims": "every planned kill cut at least one claim in flight (validity)",
    "recovered_on_new_worker": "a replacement worker answered within the bound",
    "rolling_restart_no_5xx": "no 5xx during the rolling restart",
    # replication
    "no_lost_acknowledged_claims": "every acknowledged claim survived the failover",
    "lost_claims_on_old_primary": "each claim named lost is a row of the old primary",
    "failover_done": "a standby was promoted",
    "served_after_promotion": "claims succeeded after the promotion",
    "old_primary_rejoined": "the old primary rejoined as a standby",
    "loss_caught": "an unsafe configuration's loss was caught and explained",
    "failover_command": "the user's failover command ran and exited 0",
    "stale_reads": "no read missed a claim acknowledged before it began",
    "stale_reads_caught": "the linearizability check flagged every run with stale reads",
    # input boundary
    "statuses_as_contract": "every hostile request answered with the contract's status",
    "clear_json_errors": "every rejection a JSON error, no driver text, exact where fixed",
    "rejections_change_nothing": "the tables are unchanged by every rejected request",
    "accepted_round_trip": "accepted names read back exactly; claims visible",
    "catalog_size": "every catalog and generated case was sent",
    # slow clients
    "slow_headers_timed_out": "a head sent a byte at a time answered 408 at the deadline",
    "slow_body_timed_out": "a body short of its Content-Length answered 408 at the deadline",
    "idle_closed": "a connection that sent nothing closed at the deadline",
    "cut_body_closed": "a body cut by a FIN closed (or 408) within the deadline",
    "probes_wrote_nothing": "nothing the slow probes sent was written",
    "served_beside_crowd": "normal claims served, and fast, beside a slowloris crowd",
    "crowd_freed": "the server freed the slowloris crowd's connections by the deadline",
    # Locust
    "swarm_complete": "every planned op reported once by the Locust workers",
    # exposure of a mutant
    "symptoms": "the mutant's bug shows no visible mark",
}

#: The invariants ``always_on`` runs, in order.
INVARIANTS: tuple[str, ...] = (
    "conservation",
    "one_claim_per_user",
    "no_orphan_claims",
    "no_negative_stock",
    "claims_match_history",
    "statuses_allowed",
    "contract_kept",
    "no_server_errors",
    "no_driver_text",
)

Shared = Literal["catalog", "faults", "own"]
#: The checks a run gets besides its own, by the kind of workload (``Workload.checks``):
#: the catalog's (no timeout allowed), a fault scenario's (timeouts and 503s are the
#: fault's doing; the service must recover), or none (the workload composes them).
SHARED: dict[Shared, tuple[str, ...]] = {
    "catalog": (*INVARIANTS, "no_timeouts", "linearizable", "no_leaks"),
    "faults": (*INVARIANTS, "linearizable", "no_leaks", "recovered"),
    "own": (),
}


def describe(name: str) -> str:
    """What the check ``name`` judges (a per-size check reads its base name's)."""
    base = name.rsplit("_", 1)[0] if name not in CHECKS and name[-1:].isdigit() else name
    return CHECKS.get(base, "")


def always_on(
    history: History,
    state: FinalState,
    *,
    allow_unavailable: bool = False,
    expect_no_timeouts: bool = True,
) -> list[Verdict]:
    """The invariants every run keeps (``INVARIANTS``, in order), then ``no_timeouts``."""
    verdicts = [
        conservation(state, history),
        one_claim_per_user(state),
        no_orphan_claims(state),
        no_negative_stock(state),
        claims_match_history(history, state),
        statuses_allowed(history),
        contract_kept(history),
        no_server_errors(history, allow_unavailable=allow_unavailable),
        no_driver_text(history),
    ]
    assert tuple(v.name for v in verdicts) == INVARIANTS
    if expect_no_timeouts:
        verdicts.append(no_timeouts(history))
    return verdicts
