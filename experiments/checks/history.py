"""Checks of the history: statuses, server errors, driver text, the contract, timeouts,
reads, and the history against the claim rows."""

from __future__ import annotations

from experiments.checks._compose import check, verdict_of
from experiments.checks.state import FinalState
from experiments.contract import DRIVER_TEXT, driver_text
from experiments.history import INDETERMINATE, History
from experiments.result import Verdict

__all__ = [
    "ALLOWED_RESULTS",
    "ALLOWED_STATUSES",
    "DRIVER_TEXT",
    "claims_match_history",
    "contract_kept",
    "gets_consistent",
    "no_driver_text",
    "no_server_errors",
    "no_timeouts",
    "statuses_allowed",
]


@check("claims_match_history")
def claims_match_history(history: History, state: FinalState) -> Verdict:
    """Successful claims in the history equal the claim rows of the run's coupons.

    With indeterminate ops (timeout, lost connection, 503) their effect may or may
    not have landed: ok <= rows <= ok + indeterminate claims.
    """
    claims = [o for o in history if o.kind == "claim" and o.coupon.startswith(state.prefix)]
    ok = sum(1 for o in claims if o.result == "ok")
    maybe = sum(1 for o in claims if o.result in INDETERMINATE)
    rows = state.claim_rows()
    figures = {"ok_claims": ok, "indeterminate_claims": maybe, "claim_rows": rows}
    if maybe == 0:
        passed = ok == rows
        detail = f"{ok} ok claims, {rows} claim rows"
    else:
        passed = ok <= rows <= ok + maybe
        detail = f"{ok} ok + {maybe} indeterminate claims, {rows} claim rows"
    # Per user and coupon too: an acknowledged claim must have its row.
    held = {(u, c) for _, u, c in state.claims}
    lost = [
        f"{o.user} on {o.coupon}"
        for o in claims
        if o.result == "ok" and (o.user, o.coupon) not in held
    ]
    if lost:
        return Verdict(
            "claims_match_history", False, f"acknowledged claims without a row: {lost[:5]}", figures
        )
    # And the reverse: a row must belong to a claim that succeeded or may have. A row of
    # a user no such claim names is a phantom the counts alone can hide in the slack of
    # the indeterminate claims (a lost claim made unknown beside a phantom: 0 + 1 >= 1).
    could = {(o.user, o.coupon) for o in claims if o.result == "ok" or o.result in INDETERMINATE}
    phantoms = sorted(f"{u} on {c}" for _, u, c in state.claims if (u, c) not in could)
    if phantoms:
        return Verdict(
            "claims_match_history",
            False,
            f"claim rows no successful or indeterminate claim explains: {phantoms[:5]}",
            {**figures, "phantom_rows": len(phantoms)},
        )
    return Verdict("claims_match_history", passed, detail, figures)


# -- the history alone ---------------------------------------------------------------

#: Result kinds each operation may end with, on any layer.
ALLOWED_RESULTS: dict[str, frozenset[str]] = {
    "create": frozenset({"ok", "coupon_exists", "invalid", "unavailable", "unknown"}),
    "claim": frozenset(
        {"ok", "not_found", "already_claimed", "no_stock", "invalid", "unavailable", "unknown"}
    ),
    "get": frozenset({"ok", "not_found", "unavailable", "unknown"}),
}

#: HTTP statuses each operation may answer with, and the one that means ok.
ALLOWED_STATUSES: dict[str, frozenset[int]] = {
    "create": frozenset({201, 400, 409, 503}),
    "claim": frozenset({200, 400, 404, 409, 503}),
    "get": frozenset({200, 404, 503}),
}
_OK_STATUS = {"create": 201, "claim": 200, "get": 200}


@check("statuses_allowed")
def statuses_allowed(history: History) -> Verdict:
    """Every result (and HTTP status) is in the set allowed for its operation kind."""
    bad = []
    for o in history:
        if o.result not in ALLOWED_RESULTS[o.kind]:
            bad.append(f"op {o.op_id} {o.kind} ended {o.result}")
        if o.http_status is not None:
            if o.http_status not in ALLOWED_STATUSES[o.kind]:
                bad.append(f"op {o.op_id} {o.kind} answered HTTP {o.http_status}")
            elif o.result == "ok" and o.http_status != _OK_STATUS[o.kind]:
                bad.append(f"op {o.op_id} {o.kind} ok with HTTP {o.http_status}")
    return verdict_of(
        "statuses_allowed",
        bad,
        f"all {len(history)} ops within their allowed sets",
        {"violations": len(bad)},
    )


@check("no_server_errors")
def no_server_errors(history: History, *, allow_unavailable: bool = False) -> Verdict:
    """No 5xx and no server_error; 503 / unavailable only where a fault allows it."""
    bad = []
    for o in history:
        status = o.http_status or 0
        if o.result == "server_error" or (status >= 500 and status != 503):
            bad.append(
                f"op {o.op_id} {o.kind}: {o.result} {o.http_status or ''} {o.message or ''}".strip()
            )
        elif not allow_unavailable and (o.result == "unavailable" or status == 503):
            bad.append(f"op {o.op_id} {o.kind}: unavailable {o.http_status or ''}".strip())
    return verdict_of("no_server_errors", bad, "no 5xx", {"errors": len(bad)})


@check("no_driver_text")
def no_driver_text(history: History) -> Verdict:
    """No answer leaks driver or SQL text (the client's own transport errors aside).

    An error's message is searched; an answer outside the contract is searched in its
    kept body, every string of it (``experiments.contract.driver_text``), not in the
    lab's own account of why it broke the contract.
    """
    bad = []
    for o in history:
        # A transport error (unknown) is the client's message, not the server's.
        if o.result == "unknown":
            continue
        if o.result == "contract_violation":
            text = driver_text(o.body)
        else:
            text = o.message if o.message and DRIVER_TEXT.search(o.message) else None
        if text:
            bad.append(f"op {o.op_id} {o.kind}: {text[:120]!r}")
    return verdict_of("no_driver_text", bad, "no driver text in any message", {"leaks": len(bad)})


@check("contract_kept")
def contract_kept(history: History) -> Verdict:
    """Every HTTP answer was the contract's for its operation (status, Content-Type, body).

    On the service layer there is no HTTP answer to judge: it passes with 0 judged.
    """
    judged = [o for o in history if o.http_status is not None]
    broken = [o for o in history if o.result == "contract_violation"]
    bad = [f"op {o.op_id} {o.kind} HTTP {o.http_status}: {(o.message or '')[:160]}" for o in broken]
    by_status: dict[str, int] = {}
    for o in broken:
        key = str(o.http_status)
        by_status[key] = by_status.get(key, 0) + 1
    return verdict_of(
        "contract_kept",
        bad,
        f"all {len(judged)} HTTP answers as the contract says"
        if judged
        else "no HTTP answer to judge (service layer)",
        {
            "judged": len(judged),
            "violations": len(broken),
            "violations_by_status": by_status,
            "first_body": broken[0].body if broken else None,
        },
    )


#: A stampede whose peak in flight is below this share of its workers did not collide.
@check("no_timeouts")
def no_timeouts(history: History) -> Verdict:
    bad = [
        f"op {o.op_id} {o.kind}: {o.message or 'unknown'}" for o in history if o.result == "unknown"
    ]
    return verdict_of(
        "no_timeouts", bad, "no op timed out or lost its connection", {"unknown": len(bad)}
    )


@check("gets_consistent")
def gets_consistent(history: History) -> Verdict:
    """Every successful get read a consistent coupon: remaining + claimed_by = amount."""
    bad = []
    reads = 0
    for o in history:
        if o.kind != "get" or o.result != "ok":
            continue
        reads += 1
        value = o.value or {}
        amount, remaining, users = (
            value.get("amount"),
            value.get("remaining_amount"),
            value.get("claimed_by"),
        )
        if not (isinstance(amount, int) and isinstance(remaining, int) and isinstance(users, list)):
            bad.append(f"get {o.op_id} read a malformed value {value!r}")
        elif remaining + len(users) != amount or len(set(users)) != len(users):
            bad.append(
                f"get {o.op_id}: remaining {remaining} + {len(users)} claimers != amount {amount}"
            )
    return verdict_of("gets_consistent", bad, f"all {reads} reads consistent", {"reads": reads})
