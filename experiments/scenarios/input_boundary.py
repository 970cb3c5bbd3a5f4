"""input_boundary: the hostile catalog and 1,000 generated bodies over real HTTP, judged by the contract."""

from __future__ import annotations

import contextlib
import json
import time
from typing import Any
from urllib.parse import unquote_to_bytes

import httpx
import psycopg

from experiments.checks import (
    DRIVER_TEXT,
    FinalState,
    Shared,
    claims_match_history,
    conservation,
    no_driver_text,
    no_negative_stock,
    no_orphan_claims,
    no_timeouts,
    one_claim_per_user,
)
from experiments.history import History, Op, ResultKind
from experiments.hostile import Case, Endpoint, catalog, expect_body, generated, get_path
from experiments.linearizability import LINEARIZABLE_TIME_LIMIT_S, check_linearizable
from experiments.pipeline import Run, Workload
from experiments.pipeline import run as run_pipeline
from experiments.plans import Plan
from experiments.result import Result, Verdict
from experiments.runner import RunReport
from experiments.spec import Range, RunSpec

NAME = "input_boundary"
TITLE = "Input boundary"
DESCRIPTION = (
    "The hostile catalog (long names, SQL injection, quotes, NUL and control characters, "
    "emoji and right-to-left text, amount edges and overflow, missing and extra fields, "
    "non-objects, malformed JSON, wrong content types, > 1 MiB and deeply nested bodies, "
    "wrong methods and paths) plus 1,000 seeded Hypothesis bodies, over real HTTP. "
    "Expected: no 5xx; each status in the contract's set; every rejection a JSON error "
    "without driver text; the database unchanged by every rejected request (fingerprint "
    "of both tables); accepted odd names read back exactly through GET."
)
DEFAULTS: dict[str, Any] = {"generated_cases": 1000}
_OK = frozenset({200, 201})
_REJECTED: dict[int, ResultKind] = {
    400: "invalid",
    413: "invalid",
    405: "invalid",
    404: "not_found",
}


def _fingerprint(conn: psycopg.Connection[Any], like: str) -> str:
    row = conn.execute(
        "SELECT md5(coalesce((SELECT string_agg(name || '|' || amount || '|' || remaining_amount,"
        " ',' ORDER BY name) FROM coupons WHERE name LIKE %(p)s), '')"
        " || '#' || coalesce((SELECT string_agg(id || '|' || user_id || '|' || coupon_name,"
        " ',' ORDER BY id) FROM claims WHERE coupon_name LIKE %(p)s OR user_id LIKE %(p)s), ''))",
        {"p": like},
    ).fetchone()
    assert row is not None
    return str(row[0])


def _as_operation(op: Op, method: str, path: str, body: bytes | str | None) -> bool:
    """Fill ``op`` with the operation the request is (coupon, user, amount from the body),
    so the history checks and linearizability read it; False for a request that is no
    operation (wrong method or path), which touches nothing."""
    if method == "GET" and path.startswith("/api/coupons/"):
        op.kind = "get"
        op.coupon = unquote_to_bytes(path[len("/api/coupons/") :]).decode("utf-8", "replace")
        return True
    if method != "POST" or path not in ("/api/coupons", "/api/coupons/claim"):
        return False
    op.kind = "create" if path == "/api/coupons" else "claim"
    try:
        data = json.loads(body) if body else None
    except (ValueError, RecursionError):
        data = None
    if isinstance(data, dict):
        name = data.get("name" if op.kind == "create" else "coupon_name")
        op.coupon = name if isinstance(name, str) else op.coupon
        amount = data.get("amount")
        op.amount = amount if isinstance(amount, int) and not isinstance(amount, bool) else None
        user = data.get("user_id")
        op.user = user if isinstance(user, str) and op.kind == "claim" else None
    return True


def _error_of(response: httpx.Response) -> tuple[str | None, str | None]:
    """(error text, problem) of a rejection: a JSON object with a string ``error``."""
    try:
        body = response.json()
    except ValueError:
        return None, f"not JSON: {response.text[:80]!r}"
    if not isinstance(body, dict) or not isinstance(body.get("error"), str) or not body["error"]:
        return None, f"no error field: {str(body)[:80]!r}"
    return str(body["error"]), None


#: HTTP only: asked for another layer, it runs on HTTP and says so.
#: The fault it injects (``coupon-chaos list`` shows it).
FAULT = "hostile requests: the catalog of bad input and seeded Hypothesis bodies, over HTTP"
LAYERS: tuple[str, ...] = ("http",)
COMMON: dict[str, Any] = {
    # About 1,240 requests plus read-backs: 22 s measured on a loaded 2-core machine
    # (load 7, median request 1.5 ms once the server set TCP_NODELAY); 120 s leaves
    # room, 60 s is tight.
    "run_timeout_s": 120.0,
}
RANGES: dict[str, Range] = {"generated_cases": Range(0, 100_000)}
#: It judges each hostile request itself: statuses_as_contract and clear_json_errors
#: take the place of statuses_allowed and contract_kept, whose per-operation sets do not
#: hold for a wrong method or path by design.
SHARED: Shared = "own"
CHECKS: tuple[str, ...] = (
    "statuses_as_contract",
    "no_server_errors",
    "clear_json_errors",
    "rejections_change_nothing",
    "accepted_round_trip",
    "catalog_size",
    "conservation",
    "one_claim_per_user",
    "no_orphan_claims",
    "no_negative_stock",
    "claims_match_history",
    "no_driver_text",
    "no_timeouts",
    "linearizable",
    "no_leaks",
)


def run(spec: RunSpec) -> Result:
    generated_cases = int(spec["generated_cases"])
    problems: dict[str, list[str]] = {
        "status": [],
        "error_body": [],
        "changed": [],
        "effect": [],
        "5xx": [],
    }
    counts = {"catalog": 0, "generated": 0, "rejected": 0, "accepted": 0}
    status_hist: dict[int, int] = {}
    sizes: dict[str, int] = {}

    def make_plan(seed: int, prefix: str) -> Plan:
        return Plan(
            seed=seed,
            prefix=prefix,
            workers=1,
            ops=(),
            setup=((f"{prefix}-target", 1_000_000),),
            shape="hostile",
        )

    def drive(r: Run) -> RunReport:
        lab, prefix, history, seed = r.lab, r.prefix, r.history, r.seed
        target = r.plan.setup[0][0]
        like = "%" if lab.isolated else f"{prefix}%"
        conn = lab.conn
        t0 = time.monotonic()
        existing: set[str] = {target}
        claimed: set[str] = set()
        deadline = time.monotonic() + r.budget_s
        with httpx.Client(base_url=lab.server.url, timeout=spec.op_timeout_s) as client:
            cases: list[Case] = catalog(prefix, target)
            catalog_total = len(cases)
            gen = generated(prefix, target, seed, generated_cases)
            for endpoint, body, ct in gen:
                expect, effect = expect_body(
                    endpoint, body, ct, existing=set(), target=target, claimed=set()
                )
                cases.append(
                    Case(
                        f"generated {endpoint}",
                        "generated",
                        "POST",
                        "/api/coupons" if endpoint == "create" else "/api/coupons/claim",
                        body,
                        (("content-type", ct),) if ct else (),
                        expect,
                        effect,
                        extra={"endpoint": endpoint, "ct": ct},
                    )
                )
            for i, case in enumerate(cases):
                if time.monotonic() > deadline:
                    problems["status"].append(f"time bound reached after {i} cases")
                    break
                if case.group == "generated":
                    # The expectation depends on what earlier cases created or claimed.
                    ep: Endpoint = case.extra["endpoint"]
                    exp, effect = expect_body(
                        ep,
                        case.body,
                        case.extra["ct"],
                        existing=existing,
                        target=target,
                        claimed=claimed,
                    )
                    case = Case(
                        case.name,
                        case.group,
                        case.method,
                        case.path,
                        case.body,
                        case.headers,
                        exp,
                        effect,
                        extra=case.extra,
                    )
                    counts["generated"] += 1
                else:
                    counts["catalog"] += 1
                before = _fingerprint(conn, like)
                op = Op(
                    op_id=i,
                    worker=0,
                    kind="claim"
                    if case.path.endswith("/claim") and case.method == "POST"
                    else ("create" if case.method == "POST" else "get"),
                    coupon=case.path[:80],
                    phase=case.group,
                )
                is_operation = _as_operation(op, case.method, case.path, case.body)
                op.invoke_ns = time.monotonic_ns()
                try:
                    response = client.request(
                        case.method,
                        case.path,
                        content=case.body or None,
                        headers=dict(case.headers),
                    )
                except httpx.HTTPError as err:
                    op.complete_ns = time.monotonic_ns()
                    op.result = "unknown"
                    op.message = f"{type(err).__name__}"
                    history.append(op)
                    problems["status"].append(f"{case.name}: no answer ({type(err).__name__})")
                    continue
                op.complete_ns = time.monotonic_ns()
                status = response.status_code
                op.http_status = status
                status_hist[status] = status_hist.get(status, 0) + 1
                label = f"{case.name} [{case.group}]"
                if status >= 500:
                    problems["5xx"].append(f"{label}: {status}")
                if status not in case.expect:
                    problems["status"].append(
                        f"{label}: {status}, expected {sorted(case.expect)} ({response.text[:100]!r})"
                    )
                if status in _OK:
                    op.result = "ok"
                    counts["accepted"] += 1
                else:
                    counts["rejected"] += 1
                    op.result = _REJECTED.get(status, "server_error")
                    if status == 409:
                        op.result = "already_claimed" if op.kind == "claim" else "coupon_exists"
                    error, bad = _error_of(response)
                    op.message = error
                    if bad:
                        problems["error_body"].append(f"{label}: {bad}")
                    elif error and DRIVER_TEXT.search(error):
                        problems["error_body"].append(f"{label}: driver text in {error!r}")
                    elif case.error is not None and error != case.error:
                        problems["error_body"].append(
                            f"{label}: {error!r}, expected {case.error!r}"
                        )
                if not is_operation and op.result != "unknown":
                    # No endpoint: nothing it could have touched (rejections_change_nothing
                    # checks the tables); the history keeps it as a refused request.
                    op.result = "invalid"
                elif op.kind == "get" and op.result == "ok":
                    with contextlib.suppress(ValueError):
                        view = response.json()
                        if isinstance(view, dict):
                            op.value = {
                                k: view.get(k) for k in ("amount", "remaining_amount", "claimed_by")
                            }
                history.append(op)
                after = _fingerprint(conn, like)
                if status not in _OK and after != before:
                    problems["changed"].append(
                        f"{label}: rejected with {status} but the tables changed"
                    )
                if status in _OK and case.effect == "create" and case.method == "POST":
                    name = case.coupon
                    amount = case.amount
                    if name is None:
                        parsed = json.loads(case.body)
                        name, amount = parsed["name"], parsed["amount"]
                    existing.add(name)
                    got = client.get(get_path(name))
                    got_body = got.json() if got.status_code == 200 else None
                    if not (
                        isinstance(got_body, dict)
                        and got_body.get("name") == name
                        and got_body.get("amount") == amount
                        and got_body.get("remaining_amount") == amount
                    ):
                        problems["effect"].append(
                            f"{label}: GET {get_path(name)[:60]} answered {got.status_code} {str(got_body)[:80]}"
                        )
                elif status in _OK and case.effect == "claim":
                    user = case.user
                    if user is None:
                        user = json.loads(case.body)["user_id"]
                    claimed.add(user)
                    got = client.get(get_path(target))
                    view = got.json() if got.status_code == 200 else {}
                    if user not in view.get("claimed_by", []):
                        problems["effect"].append(
                            f"{label}: claimed, yet {user[:40]!r} not in claimed_by"
                        )
                elif status in _OK and case.effect == "none":
                    problems["effect"].append(
                        f"{label}: accepted ({status}) a request expected to change nothing"
                    )

        sizes["catalog_total"] = catalog_total
        sent = counts["catalog"] + counts["generated"]
        return RunReport(1, sent, sent, 0, time.monotonic() - t0, None, time.monotonic() > deadline)

    def expect(history: History, state: FinalState, r: Run) -> list[Verdict]:
        catalog_total = sizes["catalog_total"]
        names = {
            "status": (
                "statuses_as_contract",
                "every status in the contract's set for its request",
            ),
            "5xx": ("no_server_errors", "no 5xx"),
            "error_body": (
                "clear_json_errors",
                "every rejection a JSON error, no driver text, exact where fixed",
            ),
            "changed": ("rejections_change_nothing", "tables unchanged by every rejected request"),
            "effect": ("accepted_round_trip", "accepted names read back exactly; claims visible"),
        }
        verdicts = [
            Verdict(
                vname,
                not problems[key],
                ok
                if not problems[key]
                else f"{len(problems[key])} problems: " + "; ".join(problems[key][:5]),
                {"problems": problems[key][:50], "count": len(problems[key])},
            )
            for key, (vname, ok) in names.items()
        ]
        verdicts += [
            Verdict(
                "catalog_size",
                # All of them sent: a time bound or a short Hypothesis draw must not pass.
                counts["catalog"] >= 150
                and counts["catalog"] == catalog_total
                and counts["generated"] == generated_cases,
                f"{counts['catalog']} of {catalog_total} catalog cases sent (at least 150 needed),"
                f" {counts['generated']} of {generated_cases} generated",
                {"catalog": counts["catalog"], "generated": counts["generated"]},
            ),
            conservation(state),
            one_claim_per_user(state),
            no_orphan_claims(state),
            no_negative_stock(state),
            # The rest of the always-on set that applies to hostile requests (statuses and
            # bodies are judged per case above: statuses_as_contract, clear_json_errors).
            claims_match_history(history, state),
            no_driver_text(history),
            no_timeouts(history),
            check_linearizable(history, LINEARIZABLE_TIME_LIMIT_S),
        ]
        return verdicts

    return run_pipeline(
        spec,
        Workload(
            make_plan=make_plan,
            expect=expect,
            drive=drive,
            checks=SHARED,
            database="private",
            summary=lambda r: {
                "isolated_database": r.lab.isolated,
                **counts,
                "statuses": dict(sorted(status_hist.items())),
                "server_errors": len(problems["5xx"]),
                "problems": {k: len(v) for k, v in problems.items()},
            },
        ),
    )
