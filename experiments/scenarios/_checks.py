"""Which checks each scenario runs: the shared sets, and each scenario's own (for ``list``).

Kept true by the tests that run every scenario: the verdict names a run returns are
``checks_of(name)`` (scale's per-size checks read ``<check>_<size>``).
"""

from __future__ import annotations

__all__ = [
    "ALWAYS_ON",
    "BOUNDARY_ALWAYS_ON",
    "FAULT_ALWAYS_ON",
    "OWN_CHECKS",
    "checks_of",
    "shared_checks_of",
]

#: ``experiments.checks.always_on``, then linearizability and the leak check.
ALWAYS_ON: tuple[str, ...] = (
    "conservation",
    "one_claim_per_user",
    "no_orphan_claims",
    "no_negative_stock",
    "claims_match_history",
    "statuses_allowed",
    "contract_kept",
    "no_server_errors",
    "no_driver_text",
    "no_timeouts",
    "linearizable",
    "no_leaks",
)
#: Fault scenarios tolerate timeouts (the fault's doing) and must recover.
FAULT_ALWAYS_ON: tuple[str, ...] = (
    *(c for c in ALWAYS_ON if c != "no_timeouts"),
    "recovered",
)
#: input_boundary judges each hostile request itself (statuses_as_contract and
#: clear_json_errors take the place of statuses_allowed and contract_kept, whose
#: per-operation sets do not hold for a wrong method or path by design).
BOUNDARY_ALWAYS_ON: tuple[str, ...] = tuple(
    c for c in ALWAYS_ON if c not in ("statuses_allowed", "contract_kept")
)

_STAMPEDE = ("claim_counts", "final_stock", "claim_rows", "stampede_collided")
#: Each scenario's own checks, beyond its shared set.
OWN_CHECKS: dict[str, tuple[str, ...]] = {
    "mixed_load": ("gets_consistent", "creates_collided"),
    "zero_stock_stampede": _STAMPEDE,
    "constraint_storm": _STAMPEDE,
    "interleaved_create_claim": (
        "create_counts",
        "claim_results",
        "claims_after_create_succeed",
        "final_stock_within_plan",
        "no_success_before_create",
        "no_not_found_after_create",
    ),
    "flash_sale": _STAMPEDE,
    "double_dip": _STAMPEDE,
    "scale": tuple(f"{c}_<size>" for c in _STAMPEDE),
    "pool_exhaustion": (
        "claim_results",
        "get_results",
        "exhaustion_observed",
        "unavailable_only_when_exhausted",
        "refusals_fast",
    ),
    "query_timeout": (
        "claim_results",
        "lock_taken",
        "timeouts_observed",
        "no_success_while_locked",
        "timeouts_bounded",
        "slow_query_cancelled",
    ),
    "connection_drop": ("claim_results", "get_results", "backends_killed"),
    "database_restart": (
        "claim_results",
        "get_results",
        "outage_observed",
        "service_recovered_in_bound",
        "ops_bounded",
        "outage_answers_fast",
    ),
    "partial_failure": (
        "claim_results",
        "no_partial_claim",
        "failures_are_the_injected_ones",
        "fault_injected",
    ),
    "lock_contention": (
        "claim_results",
        "lock_taken",
        "waiters_cancelled",
        "no_success_while_locked",
        "waiters_succeed_after_release",
    ),
    "network_faults": ("claim_results", "get_results", "latency_applied", "reset_cut_connections"),
    "negative_stock": (
        "claim_counts",
        "final_stock",
        "claim_rows",
        "final_stock_sequential",
        "check_rejects_negative",
    ),
    # Replication: an unsafe configuration (async) moves the checks its loss or its
    # stale reads fail to summary["findings"], and loss_caught / stale_reads_caught
    # say whether the lab caught it.
    "failover": (
        "no_lost_acknowledged_claims",
        "lost_claims_on_old_primary",
        "failover_done",
        "served_after_promotion",
        "old_primary_rejoined",
        "loss_caught",
    ),
    "stale_reads": ("stale_reads", "stale_reads_caught"),
    "input_boundary": (
        "statuses_as_contract",
        "clear_json_errors",
        "rejections_change_nothing",
        "accepted_round_trip",
        "catalog_size",
    ),
    "process_crash": (
        "nemesis_ran",
        "claim_results",
        "get_results",
        "failures_only_from_kills",
        "workers_restarted",
        "dead_backends_gone",
        "recovered_on_new_worker",
        "rolling_restart_no_5xx",
    ),
}


def shared_checks_of(name: str) -> tuple[str, ...]:
    """The shared set a scenario carries (always-on, linearizability, leaks)."""
    from experiments.scenarios import FAULTS, REPLICATION

    if name == "input_boundary":
        return BOUNDARY_ALWAYS_ON
    return FAULT_ALWAYS_ON if name in FAULTS + REPLICATION else ALWAYS_ON


def checks_of(name: str) -> tuple[str, ...]:
    """Every check a run of ``name`` returns (None-free; an unknown scenario has none declared)."""
    return (*shared_checks_of(name), *OWN_CHECKS.get(name, ()))
