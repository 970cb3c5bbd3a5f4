"""Checks: judge a history and the final state of the tables, one named verdict each.

As in Jepsen, a check answers pass, fail or unknown: a check that crashes gives
``passed=None`` (unknown), never a pass. The final state is read from the tables
with plain SQL, like any client, filtered by the run's coupon prefix so runs can
share one database. Each check is a plain function returning a ``Verdict``;
``always_on`` composes the invariants every scenario must keep.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ParamSpec

import psycopg

from experiments.history import INDETERMINATE, History, Op, collision
from experiments.result import Verdict

__all__ = [
    "ALLOWED_RESULTS",
    "ALLOWED_STATUSES",
    "DRIVER_TEXT",
    "FinalState",
    "always_on",
    "at_least",
    "check",
    "claims_match_history",
    "conservation",
    "contract_kept",
    "create_winner",
    "expected_counts",
    "gets_consistent",
    "invalid_run",
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
    "statuses_allowed",
    "validity_check",
]

P = ParamSpec("P")


# -- the final state -----------------------------------------------------------------


@dataclass
class FinalState:
    """The run's rows: coupons by name (amount, remaining) and claims (id, user, coupon)."""

    prefix: str
    coupons: dict[str, tuple[int, int]] = field(default_factory=dict)
    claims: list[tuple[int, str, str]] = field(default_factory=list)
    #: Why the tables could not be read (a target without database access): every
    #: check given this state is skipped with the reason, never passed.
    unavailable: str | None = None

    def claim_rows(self, coupon: str | None = None) -> int:
        return sum(1 for _, _, c in self.claims if coupon is None or c == coupon)

    def remaining(self, coupon: str) -> int | None:
        row = self.coupons.get(coupon)
        return None if row is None else row[1]


def _like_prefix(prefix: str) -> str:
    escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return escaped + "%"


def read_state(conn: psycopg.Connection[Any], prefix: str) -> FinalState:
    """Read the coupons and claims whose coupon name starts with ``prefix``.

    Claims are read by their own ``coupon_name`` (not through a join), so a claim
    whose coupon is missing, an orphan, is seen too.
    """
    if not prefix:
        raise ValueError("a check reads only its own run's rows: give a non-empty prefix")
    pattern = _like_prefix(prefix)
    state = FinalState(prefix=prefix)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT name, amount, remaining_amount FROM coupons WHERE name LIKE %s ORDER BY name",
            (pattern,),
        )
        for name, amount, remaining in cur.fetchall():
            state.coupons[str(name)] = (int(amount), int(remaining))
        cur.execute(
            "SELECT id, user_id, coupon_name FROM claims WHERE coupon_name LIKE %s ORDER BY id",
            (pattern,),
        )
        state.claims = [(int(i), str(u), str(c)) for i, u, c in cur.fetchall()]
    return state


# -- composition ---------------------------------------------------------------------


def check(name: str) -> Callable[[Callable[P, Verdict]], Callable[P, Verdict]]:
    """Name a check and make its crash an unknown verdict, never a pass."""

    def wrap(fn: Callable[P, Verdict]) -> Callable[P, Verdict]:
        @functools.wraps(fn)
        def run(*args: P.args, **kwargs: P.kwargs) -> Verdict:
            for arg in (*args, *kwargs.values()):
                if isinstance(arg, FinalState) and arg.unavailable is not None:
                    return Verdict.skip(name, arg.unavailable)
            try:
                verdict = fn(*args, **kwargs)
            except Exception as err:
                return Verdict(name, None, f"check crashed: {type(err).__name__}: {err}")
            if verdict.passed not in (True, False, None):
                return Verdict(name, None, f"check returned {verdict.passed!r}, not a verdict")
            return verdict

        return run

    return wrap


def _verdict(name: str, bad: list[str], ok_detail: str, figures: dict[str, Any]) -> Verdict:
    if bad:
        shown = "; ".join(bad[:5]) + (f" (and {len(bad) - 5} more)" if len(bad) > 5 else "")
        return Verdict(name, False, shown, figures)
    return Verdict(name, True, ok_detail, figures)


def _run_ops(history: History, coupons: Iterable[str] | None = None) -> list[Op]:
    names = None if coupons is None else set(coupons)
    return [o for o in history if names is None or o.coupon in names]


# -- invariants of the state ---------------------------------------------------------


@check("conservation")
def conservation(state: FinalState) -> Verdict:
    """For every coupon: amount = remaining_amount + its claim rows."""
    bad = []
    for name, (amount, remaining) in state.coupons.items():
        rows = state.claim_rows(name)
        if amount != remaining + rows:
            bad.append(f"{name}: amount {amount} != remaining {remaining} + claims {rows}")
    return _verdict(
        "conservation",
        bad,
        f"amount = remaining + claims for all {len(state.coupons)} coupons",
        {"coupons": len(state.coupons), "violations": len(bad)},
    )


@check("one_claim_per_user")
def one_claim_per_user(state: FinalState) -> Verdict:
    seen: dict[tuple[str, str], int] = {}
    for _, user, coupon in state.claims:
        seen[(user, coupon)] = seen.get((user, coupon), 0) + 1
    bad = [f"user {u} holds {n} claims on {c}" for (u, c), n in seen.items() if n > 1]
    return _verdict(
        "one_claim_per_user",
        bad,
        f"{len(seen)} (user, coupon) pairs, one claim each",
        {"pairs": len(seen), "duplicates": len(bad)},
    )


@check("no_orphan_claims")
def no_orphan_claims(state: FinalState) -> Verdict:
    bad = [
        f"claim {i} by {u} on missing coupon {c}"
        for i, u, c in state.claims
        if c not in state.coupons
    ]
    return _verdict(
        "no_orphan_claims",
        bad,
        f"all {len(state.claims)} claims have a coupon",
        {"orphans": len(bad)},
    )


@check("no_negative_stock")
def no_negative_stock(state: FinalState) -> Verdict:
    bad = [f"{n}: remaining {r}" for n, (_, r) in state.coupons.items() if r < 0]
    bad += [f"{n}: remaining {r} > amount {a}" for n, (a, r) in state.coupons.items() if r > a]
    return _verdict(
        "no_negative_stock", bad, "0 <= remaining <= amount everywhere", {"violations": len(bad)}
    )


# -- the history against the state ---------------------------------------------------


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
    return _verdict(
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
    return _verdict("no_server_errors", bad, "no 5xx", {"errors": len(bad)})


#: Text that belongs to the driver or the database, never to a public error message.
DRIVER_TEXT = re.compile(
    r"psycopg|sqlstate|duplicate key|violates|ERROR:|DETAIL:|HINT:|CONTEXT:|LINE \d|"
    r"constraint|relation \"|syntax error|traceback|postgres|deadlock|"
    r"could not serialize|unique.?violation|foreignkey|checkviolation|"
    r"remaining_amount|coupons_pkey|claims_",
    re.IGNORECASE,
)


@check("no_driver_text")
def no_driver_text(history: History) -> Verdict:
    """No error message leaks driver or SQL text (the client's own transport errors aside)."""
    bad = []
    for o in history:
        # A transport error (unknown) is the client's message, not the server's.
        if o.result == "unknown":
            continue
        for text in (o.message, o.body):
            if text and DRIVER_TEXT.search(text):
                bad.append(f"op {o.op_id} {o.kind}: {text[:120]!r}")
                break
    return _verdict("no_driver_text", bad, "no driver text in any message", {"leaks": len(bad)})


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
    return _verdict(
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
COLLIDED_SHARE = 0.5


def invalid_run(verdicts: Sequence[Verdict]) -> bool:
    """The run was no experiment of what it claims: only its validity checks failed.

    ``stampede_collided`` (and ``stampede_collided_<size>``) judges the experiment, not
    the system: a stampede that did not collide says nothing about the service either
    way. Whoever draws conclusions over runs (the detection matrix, the tests) runs
    such a run again with another seed rather than count it as a catch or a failure.
    """
    failed = [v.name for v in verdicts if v.passed is False]
    return bool(failed) and all(validity_check(n) for n in failed)


def validity_check(name: str) -> bool:
    """Whether the check named ``name`` judges the experiment rather than the system."""
    return name.startswith("stampede_collided")


def stampede_collided(
    history: History,
    workers: int,
    *,
    phase: str | None = "load",
    name: str = "stampede_collided",
) -> Verdict:
    """The stampede really collided: at some instant at least half the workers were in flight.

    Fails with "not a stampede" otherwise, so a pass of the scenario's other checks
    never hides workers that ran one after another.
    """

    @check(name)
    def run() -> Verdict:
        ops = [o for o in history if phase is None or o.phase == phase]
        figures = collision(ops, workers)
        need = COLLIDED_SHARE * workers
        peak = figures["peak_in_flight"]
        shown = (
            f"peak {peak} of {workers} workers in flight at once"
            f" ({figures['peak_in_flight_share']}), overlap with the winner"
            f" {figures['overlap_with_winner']}"
        )
        if peak >= need:
            return Verdict(name, True, f"collided: {shown}", figures)
        return Verdict(name, False, f"not a stampede: {shown}, need >= {need:g}", figures)

    return run()


@check("no_timeouts")
def no_timeouts(history: History) -> Verdict:
    bad = [
        f"op {o.op_id} {o.kind}: {o.message or 'unknown'}" for o in history if o.result == "unknown"
    ]
    return _verdict(
        "no_timeouts", bad, "no op timed out or lost its connection", {"unknown": len(bad)}
    )


# -- expectations of a scenario ------------------------------------------------------


def expected_counts(
    history: History,
    kind: str,
    expected: Mapping[str, int],
    *,
    name: str | None = None,
    coupons: Iterable[str] | None = None,
    phase: str | None = None,
) -> Verdict:
    """The ``kind`` ops ended exactly as ``expected`` ({result: count}), nothing else."""
    label = name or f"{kind}_counts"

    @check(label)
    def run() -> Verdict:
        ops = [
            o
            for o in _run_ops(history, coupons)
            if o.kind == kind and (phase is None or o.phase == phase)
        ]
        got: dict[str, int] = {}
        for o in ops:
            got[o.result] = got.get(o.result, 0) + 1
        want = {k: v for k, v in expected.items() if v}
        passed = got == want
        detail = f"{kind}: got {dict(sorted(got.items()))}, expected {dict(sorted(want.items()))}"
        return Verdict(label, passed, detail, {"got": got, "expected": want})

    return run()


def remaining_equals(
    state: FinalState, coupon: str, expected: int, *, name: str = "final_stock"
) -> Verdict:
    @check(name)
    def run(state: FinalState) -> Verdict:
        got = state.remaining(coupon)
        return Verdict(
            name,
            got == expected,
            f"{coupon}: remaining {got}, expected {expected}",
            {"remaining": got, "expected": expected},
        )

    return run(state)


def rows_equal(
    state: FinalState, coupon: str, expected: int, *, name: str = "claim_rows"
) -> Verdict:
    @check(name)
    def run(state: FinalState) -> Verdict:
        got = state.claim_rows(coupon)
        return Verdict(
            name,
            got == expected,
            f"{coupon}: {got} claim rows, expected {expected}",
            {"rows": got, "expected": expected},
        )

    return run(state)


def results_within(
    history: History,
    kind: str,
    allowed: Iterable[str],
    *,
    name: str | None = None,
    coupons: Iterable[str] | None = None,
) -> Verdict:
    """Every ``kind`` op ended with one of ``allowed`` (counts not fixed)."""
    label = name or f"{kind}_results"
    allowed_set = frozenset(allowed)

    @check(label)
    def run() -> Verdict:
        ops = [o for o in _run_ops(history, coupons) if o.kind == kind]
        bad = [f"op {o.op_id} ended {o.result}" for o in ops if o.result not in allowed_set]
        return _verdict(
            label,
            bad,
            f"all {len(ops)} {kind} ops ended in {sorted(allowed_set)}",
            {"ops": len(ops), "violations": len(bad)},
        )

    return run()


def at_least(history: History, kind: str, result: str, minimum: int, *, name: str) -> Verdict:
    """At least ``minimum`` ``kind`` ops ended ``result`` (the plan meant them to)."""

    @check(name)
    def run() -> Verdict:
        got = sum(1 for o in history if o.kind == kind and o.result == result)
        return Verdict(
            name,
            got >= minimum,
            f"{got} {kind} ops ended {result}, expected at least {minimum}",
            {"count": got, "minimum": minimum},
        )

    return run()


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
    return _verdict("gets_consistent", bad, f"all {reads} reads consistent", {"reads": reads})


# -- order checks (one coupon created while it is claimed) ---------------------------


def create_winner(history: History, coupon: str) -> Op | None:
    """The one successful create of ``coupon``; None if none (several raise)."""
    wins = [o for o in history if o.kind == "create" and o.coupon == coupon and o.result == "ok"]
    if len(wins) > 1:
        raise ValueError(f"{len(wins)} creates of {coupon} succeeded")
    return wins[0] if wins else None


@check("no_success_before_create")
def no_success_before_create(history: History, coupon: str) -> Verdict:
    """No claim of ``coupon`` succeeds (completes) before the winning create was invoked."""
    win = create_winner(history, coupon)
    ok = [o for o in history if o.kind == "claim" and o.coupon == coupon and o.result == "ok"]
    if win is None:
        bad = [f"claim {o.op_id} ok but no create succeeded" for o in ok]
        return _verdict(
            "no_success_before_create",
            bad,
            "no create won and no claim succeeded",
            {"ok_claims": 0},
        )
    bad = [
        f"claim {o.op_id} completed {(win.invoke_ns - o.complete_ns) / 1e6:.3f} ms before the create began"
        for o in ok
        if o.complete_ns < win.invoke_ns
    ]
    return _verdict(
        "no_success_before_create",
        bad,
        f"all {len(ok)} ok claims ended after the winning create began",
        {"ok_claims": len(ok), "violations": len(bad)},
    )


@check("no_not_found_after_create")
def no_not_found_after_create(history: History, coupon: str) -> Verdict:
    """No claim or get of ``coupon`` invoked after the winning create completed says not_found."""
    win = create_winner(history, coupon)
    nf = [
        o
        for o in history
        if o.kind in ("claim", "get") and o.coupon == coupon and o.result == "not_found"
    ]
    if win is None:
        return Verdict(
            "no_not_found_after_create",
            True,
            "no create won: every not_found is allowed",
            {"not_found": len(nf)},
        )
    bad = [
        f"{o.kind} {o.op_id} invoked {(o.invoke_ns - win.complete_ns) / 1e6:.3f} ms after the create ended got not_found"
        for o in nf
        if o.invoke_ns > win.complete_ns
    ]
    return _verdict(
        "no_not_found_after_create",
        bad,
        f"all {len(nf)} not_found began before the winning create ended",
        {"not_found": len(nf), "violations": len(bad)},
    )


# -- the always-on set ---------------------------------------------------------------


def always_on(
    history: History,
    state: FinalState,
    *,
    allow_unavailable: bool = False,
    expect_no_timeouts: bool = True,
) -> list[Verdict]:
    """The invariants every scenario keeps, in a stable order."""
    verdicts = [
        conservation(state),
        one_claim_per_user(state),
        no_orphan_claims(state),
        no_negative_stock(state),
        claims_match_history(history, state),
        statuses_allowed(history),
        contract_kept(history),
        no_server_errors(history, allow_unavailable=allow_unavailable),
        no_driver_text(history),
    ]
    if expect_no_timeouts:
        verdicts.append(no_timeouts(history))
    return verdicts
