"""Write the scenario notebooks of notebooks/ from one table (run again after editing it).

Each notebook is thin by construction: a title and its hypothesis, a ``parameters``
cell of literals (the common knobs and the scenario's defaults, read from the
registry), one ``scenarios.run`` call, tables, charts, the verdict table, one
assertion cell per expectation, and a last cell that records the result. Notebooks
are written without outputs; ``--check`` exits 1 when a committed one differs.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat as _nbformat

from experiments.scenarios import SCENARIOS

# nbformat's functions are untyped; one Any here instead of an ignore at every call.
nbformat: Any = _nbformat

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"

#: The timeline draws the ops a failed linearizability check names (none when it passes).
_WITNESSES = 'highlight=result.verdict("linearizable").figures.get("witness_op_ids")'
_TIMELINE = f"report.timeline(result, {_WITNESSES})"

_BY_SIZE = """checks = [result.verdict(f"{check}_{{n}}") for n in sizes]
failed = [c.detail for c in checks if not (c.passed or c.skipped)]
assert not failed, f"{check} at every size: {{failed}}\""""


def _verdict(name: str) -> str:
    # A check skipped (with its reason) is neither passed nor failed, and a failure its
    # finding explains is the expected anomaly (its own check asserts it was caught).
    return (
        f'check = result.verdict("{name}")\n'
        'assert check.passed or check.skipped or check.label == "finding", check.detail'
    )


def _checks(name: str) -> tuple[str, ...]:
    """An assertion per check of the registry (``Scenario.checks``), in its order."""
    scenario = SCENARIOS[name]
    if callable(scenario.own_checks):
        # Names that follow the figures (scale's per size): one cell per base check.
        shared = scenario.checks()[: -len(scenario.own_checks(scenario.spec()))]
        bases = dict.fromkeys(c.rsplit("_", 1)[0] for c in scenario.own_checks(scenario.spec()))
        return (*(_verdict(c) for c in shared), *(_BY_SIZE.format(check=b) for b in bases))
    return tuple(_verdict(c) for c in scenario.checks())


@dataclass(frozen=True)
class Spec:
    """What a scenario's notebook says and asserts beyond the common cells."""

    file: str
    hypothesis: str
    breaks: str
    expectations: tuple[str, ...]
    charts: tuple[str, ...] = (
        "report.outcome_chart(result)",
        "report.latency_ecdf(result)",
        "report.latency_over_time(result)",
        _TIMELINE,
    )
    extra_tables: tuple[str, ...] = ()
    #: False: the scenario ignores ``database_url`` and ``DATABASE_URL`` (the suite
    #: passes the URL in the kernel's environment, never as a parameter) and starts a
    #: database of its own (one it may stop and restart).
    takes_database_url: bool = True
    #: More lines for the record cell, run when ``out_dir`` is given.
    record: tuple[str, ...] = ()


SPECS: dict[str, Spec] = {
    "mixed_load": Spec(
        "01_mixed_load.ipynb",
        "Under a seeded mix of creates (20%), claims (50%) and reads (30%) on three "
        "coupons of 100, spread over concurrent workers, every operation answers with a "
        "status its kind allows, nothing times out, every read is consistent with the "
        "claims before it, and every invariant holds at the end.",
        "a 5xx, a timeout or lost connection, a status outside an operation's allowed "
        "set, an inconsistent read, or any invariant violated.",
        (),
    ),
    "zero_stock_stampede": Spec(
        "02_zero_stock_stampede.ipynb",
        "One coupon with stock 1 and 100 users released together by a barrier: exactly "
        "one claim succeeds and the 99 others are told the coupon is out of stock; the "
        "stock ends at 0 with exactly one claim row.",
        "two winners (oversell), a winner without a row, any answer other than success "
        "or out of stock, or stock left over.",
        (),
    ),
    "constraint_storm": Spec(
        "03_constraint_storm.ipynb",
        "One user sends 50 claims for the same coupon (stock 100) at once: the UNIQUE "
        "(user, coupon) constraint lets exactly one through, the 49 others are told "
        "'already claimed' (409 over HTTP) with no driver text, and the stock drops by one.",
        "two claims for one user, a unique-violation leaking as a 500 or as driver text, "
        "or stock that moved by anything but one.",
        (),
    ),
    "interleaved_create_claim": Spec(
        "04_interleaved_create_claim.ipynb",
        "Thirty concurrent operations alternate creating one new coupon (amount 50) and "
        "claiming it: exactly one create wins and the rest are told the coupon exists; "
        "a claim succeeds only after the winning create began, 'not found' only before "
        "it ended, and every claim invoked after the create completed succeeds (the plan "
        "gives each claim a new user and stock for all); the final stock lies between 50 "
        "minus the claims that could have landed and 50 minus those that must have.",
        "two creates winning, a claim succeeding before the coupon could exist, a "
        "'not found' after it surely existed, a claim invoked after the create completed "
        "that failed, or a final stock outside what the plan allows.",
        (),
    ),
    "flash_sale": Spec(
        "05_flash_sale.ipynb",
        "Fifty users rush a coupon with stock 5: exactly five succeed, the 45 others "
        "are told it is out of stock, and the stock ends at 0.",
        "more or fewer than five winners, any other answer, or stock left over.",
        (),
    ),
    "double_dip": Spec(
        "06_double_dip.ipynb",
        "One user sends 10 claims for a coupon with stock 100: one succeeds, nine are "
        "told 'already claimed', and the stock drops by exactly one.",
        "a second success for the same user, another kind of answer, or stock that "
        "moved by anything but one.",
        (),
    ),
    "scale": Spec(
        "07_scale.ipynb",
        "Stampedes of 100, 200 and 500 users, one after another, each on its own coupon "
        "with a tenth as much stock: at every size exactly the stock succeeds, the rest "
        "are out of stock, nothing errors; the latency quantiles show how waiting grows "
        "with the crowd.",
        "at any size, a success count other than the stock, an error or timeout, or "
        "stock left over.",
        (),
        charts=(
            "report.outcome_chart(result)",
            'report.latency_ecdf(result, kind="claim", by="phase")',
            'report.latency_ecdf(result, kind="claim")',
            "report.latency_over_time(result)",
            _TIMELINE,
        ),
        extra_tables=(
            'pd.DataFrame(result.summary["latency_by_size"]).T.rename_axis("users")',
            'pd.Series(result.summary["throughput_by_size"], name="claims/s").rename_axis("users").to_frame()',
        ),
    ),
}


_BY_PHASE = (
    'pd.DataFrame(result.summary["outcomes_by_phase"]).T.fillna(0).astype(int).rename_axis("phase")'
)
_WINDOWS = 'pd.DataFrame(result.summary["windows"], columns=["fault", "phase", "start_s", "end_s"])'


def _fault_charts(phase: str | None) -> tuple[str, ...]:
    shade = f'fault_phase="{phase}", ' if phase else ""
    return (
        "report.outcome_chart(result)",
        f"report.timeline(result, {shade}{_WITNESSES})",
        'report.latency_ecdf(result, by="phase")',
        "report.latency_over_time(result)",
    )


def _fault_spec(
    file: str,
    hypothesis: str,
    breaks: str,
    phase: str | None,
    *expectations: str,
    takes_database_url: bool = True,
) -> Spec:
    return Spec(
        file,
        hypothesis,
        breaks,
        # Check names are asserted from the registry; what is left is cells of their own.
        tuple(e for e in expectations if "\n" in e),
        charts=_fault_charts(phase),
        extra_tables=(_BY_PHASE, _WINDOWS),
        takes_database_url=takes_database_url,
    )


SPECS.update(
    {
        "pool_exhaustion": _fault_spec(
            "10_pool_exhaustion.ipynb",
            "Forty workers share a pool of four connections with a 0.25 s pool timeout, "
            "and for 0.8 s the nemesis holds all four. Every operation ends within the "
            "pool timeout plus slack as a success or a clean 'unavailable' (503 over HTTP), "
            "none hangs or 5xxs; each refusal is the pool's own, judged by the pool's state "
            "at the moment it refused (no connection idle, its whole timeout waited), whether "
            "the nemesis or the 40 callers exhausted it; the pool is idle afterwards and "
            "nothing is lost.",
            "a hang, a 5xx, a refusal slower than the pool timeout, a refusal while the pool "
            "had an idle connection or before its timeout, an unavailable the pool never "
            "refused, a connection never given back, or any invariant violated.",
            "exhausted",
        ),
        "query_timeout": _fault_spec(
            "11_query_timeout.ipynb",
            "Another session holds the hot coupon's row lock for 1 s while ten workers "
            "claim it through a service with a 300 ms statement timeout: the claims behind "
            "the lock end 'unavailable' within the timeout plus slack, none succeeds while "
            "the lock is surely held, and they succeed again after; a pg_sleep past the "
            "timeout is cancelled and a timed-out transaction leaves no trace.",
            "a claim succeeding through the lock, a timeout that does not fire, a timed-out "
            "claim that left a row or moved stock, or a service unhealthy afterwards.",
            "held",
            "claim_results",
            "slow_query_cancelled",
            "lock_taken",
            "timeouts_observed",
            "no_success_while_locked",
            "timeouts_bounded",
        ),
        "connection_drop": _fault_spec(
            "12_connection_drop.ipynb",
            "The service's database backends are killed (pg_terminate_backend) four times "
            "during a claim load, some while a claim sits between its insert and its "
            "decrement: the affected operations end 'unavailable' or unknown, never as a "
            "partial claim; the pool replaces the dead connections and /health returns.",
            "a claim row without its decrement or the reverse, a 5xx or driver text, a pool "
            "that does not recover, or a backend left behind.",
            "kill",
        ),
        "database_restart": Spec(
            "13_database_restart.ipynb",
            "The database the scenario starts for itself is stopped for about a second "
            "and started again during a claim load: operations in the outage end "
            "'unavailable', at once once the service's circuit breaker has opened (well "
            "under the pool timeout), every claim acknowledged before, during or after it "
            "is present afterwards, and the service serves again, without a restart, "
            "within 30 s. Measured: the p50/p99 of the refusals during the outage and the "
            "time from the database accepting connections to the first successful claim "
            "(goals: p99 under 1 s, recovery under 2 s).",
            "an acknowledged claim missing, a hang, a 5xx, refusals that wait out the pool "
            "timeout, or no success after the database came back.",
            (),
            charts=_fault_charts("down"),
            extra_tables=(
                _BY_PHASE,
                _WINDOWS,
                'pd.Series({**result.summary["outage_refusal_ms"], '
                '"refusals": result.summary["outage_refusals"], '
                '"pool timeout (s)": result.summary["pool_timeout_s"], '
                '"recovery (s)": result.summary["service_recovery_s"]}, '
                'name="outage").to_frame()',
                'pd.Series(result.summary["goals"], name="goal").rename_axis("goal").to_frame()',
            ),
            takes_database_url=False,
        ),
        "partial_failure": _fault_spec(
            "14_partial_failure.ipynb",
            "A fault point fails 30% of claims between the claim insert and the stock "
            "decrement, under concurrency: each faulted claim is rolled back entirely (no "
            "row without its decrement), answers 'unavailable', and every other claim "
            "succeeds; stock and claim rows stay consistent.",
            "a claim row for a failed claim, stock that moved for one, or refusals that are "
            "not the injected failures.",
            "failing",
            "claim_results",
            "no_partial_claim",
            "failures_are_the_injected_ones",
        ),
        "lock_contention": _fault_spec(
            "15_lock_contention.ipynb",
            "Twelve workers claim one hot coupon while another session holds its row lock "
            "for 1.2 s; half a second in, the claims waiting on the lock are cancelled. The "
            "cancelled waiters end 'unavailable', leave nothing behind and give their "
            "connection back; the others wait and succeed once the lock is released; no "
            "claim succeeds while the lock is surely held.",
            "a claim succeeding through the lock, a cancelled claim leaving a row, a waiter "
            "that never finishes, or a connection not returned to the pool.",
            "held",
        ),
        "network_faults": _fault_spec(
            "16_network_faults.ipynb",
            "The service reaches PostgreSQL through a loopback TCP proxy that goes through "
            "a seeded timetable (latency 40 ms ± 15, throttle 20 kB/s, a 0.4 s stall, a "
            "reset) during a mixed load: latency shows in the latency phase, the reset "
            "cuts connections into clean 'unavailable' answers, nothing 5xxs, no partial "
            "claim, and the service recovers once the proxy passes again.",
            "a 5xx or driver text, a partial claim, injected latency that does not show, or "
            "no recovery.",
            "reset",
        ),
        "negative_stock": _fault_spec(
            "17_negative_stock.ipynb",
            "Stock never goes below zero: forty users rush a coupon of five at once, twelve "
            "claims run one after another on a coupon of three, and a direct UPDATE below "
            "zero is refused by the CHECK constraint.",
            "more winners than stock, stock below zero, or a direct UPDATE the database accepts.",
            None,
            "check_rejects_negative",
            "claim_counts",
            "final_stock",
            "claim_rows",
            "final_stock_sequential",
        ),
    }
)
_FINDINGS = 'pd.DataFrame(result.summary.get("findings", {}).values(), columns=["name", "passed", "detail"])'
_REPLICA_TIMELINE = (
    'report.timeline(result, fault_phase="{phase}", highlight=result.summary["witness_op_ids"])'
)
SPECS["failover"] = Spec(
    "21_failover.ipynb",
    "A replicated PostgreSQL (a primary, one streaming standby) loses its primary to "
    "SIGKILL mid-load and the standby is promoted; the service finds it through its "
    "multi-host URL. With sync or remote_apply replication no acknowledged claim is "
    "lost and the claims in flight end unavailable or unknown, never as a lie. With "
    "async replication and the link cut before the kill (the default here) the lab "
    "shows acknowledged claims lost, names each, and reads them back from the old "
    "primary: an unsafe configuration, and the expected finding this notebook asserts.",
    "a sync/remote_apply run losing an acknowledged claim; an async run with a cut link "
    "whose loss goes unseen; a claim named lost that the old primary never had, or that "
    "the new one has; a 5xx; no success after the promotion.",
    (
        'finding = result.summary.get("findings", {}).get("no_lost_acknowledged_claims")\n'
        'if mode == "async" and cut_link:\n'
        '    assert finding is not None and finding["passed"] is False, (\n'
        '        f"expected acknowledged claims lost (async, link cut), got {finding}"\n'
        "    )\n"
        '    assert result.verdict("loss_caught").passed, result.verdict("loss_caught").detail',
        'if mode != "async":\n'
        '    for name in ("no_lost_acknowledged_claims", "claims_match_history", "linearizable"):\n'
        "        assert result.verdict(name).passed, result.verdict(name).detail",
        'claims = set(result.outcomes()["claim"])\n'
        'assert claims <= {"ok", "unavailable", "unknown"}, f"claims ended {claims}"',
    ),
    charts=(
        "report.outcome_chart(result)",
        _REPLICA_TIMELINE.format(phase="unavailable"),
        'report.latency_ecdf(result, by="phase")',
        "report.latency_over_time(result)",
    ),
    extra_tables=(_BY_PHASE, _WINDOWS, _FINDINGS),
    takes_database_url=False,
)
SPECS["stale_reads"] = Spec(
    "22_stale_reads.ipynb",
    "Gets served by a standby whose WAL arrives lag_s late show stock and claimants "
    "older than claims already acknowledged: the lab proves each stale read by counting "
    "(a claim acknowledged before the read began is missing from it) and the "
    "linearizability check flags every run that had one, with a two-op witness drawn "
    "on the timeline. With read_from='primary' the same load is linearizable.",
    "a stale read the linearizability check passes; a stale read with reads on the "
    "primary; a 5xx or an invariant violated.",
    (
        'if read_from == "standby" and mode == "async" and lag_s > 0:\n'
        '    assert result.summary["stale_reads"] > 0, "expected stale reads from the lagging standby"',
        'if read_from == "primary":\n'
        '    for name in ("stale_reads", "linearizable"):\n'
        "        assert result.verdict(name).passed, result.verdict(name).detail",
    ),
    charts=(
        "report.outcome_chart(result)",
        _REPLICA_TIMELINE.format(phase="lag"),
        "report.latency_over_time(result)",
    ),
    extra_tables=(_FINDINGS,),
    takes_database_url=False,
)
SPECS["input_boundary"] = Spec(
    "18_input_boundary.ipynb",
    "Over real HTTP, a catalog of at least 150 hostile requests (names at 255, 256 and "
    "10 000 characters, SQL injection, quotes, NUL and control characters, emoji and "
    "right-to-left text, amount edges and overflow, floats, strings, booleans, nulls, "
    "missing and extra fields, non-objects, malformed JSON, wrong content types, empty, "
    "oversized and deeply nested bodies, wrong methods and paths) and at least 1 000 "
    "seeded Hypothesis bodies: no 5xx, each status in the contract's set, every "
    "rejection a clear JSON error, the database unchanged by every rejected request, "
    "and accepted odd names read back exactly.",
    "a 5xx, a status outside the contract, driver text in an error, a rejected request "
    "that changed a table, or an accepted name that does not read back.",
    (
        'assert result.summary["catalog"] >= 150, '
        "f\"expected >= 150 catalog requests, sent {result.summary['catalog']}\"",
        'assert result.summary["generated"] >= 1000, '
        "f\"expected >= 1000 generated requests, sent {result.summary['generated']}\"",
        'assert result.summary["server_errors"] == 0, '
        "f\"expected no 5xx, got {result.summary['server_errors']}\"",
    ),
    charts=(
        "report.outcome_chart(result)",
        'report.latency_ecdf(result, by="phase")',
        "report.timeline(result)",
    ),
    extra_tables=(
        'pd.Series(result.summary["statuses"], name="responses").rename_axis("status")',
        'pd.Series(result.summary["problems"], name="problems").rename_axis("check")',
    ),
)

SPECS["slow_clients"] = Spec(
    "19_slow_clients.ipynb",
    "Against a server whose request deadline is request_timeout_s (short here, so the "
    "run takes seconds), over raw sockets: headers sent a byte at a time and a body "
    "that stops short of its Content-Length are each answered 408 with the contract's "
    "error body, a connection that sends nothing is closed, and a body cut by a FIN is "
    "closed (or answered 408), each at the deadline and within it plus slack_s; no 5xx; "
    "nothing the probes sent is written. Normal clients' claims all succeed, each within "
    "claim_bound_s, while a crowd of slowloris connections is held open, and the server "
    "frees the crowd's connections by the deadline.",
    "a slow request the server holds past its deadline or cuts before it, a 408 without "
    "the contract's body, a 5xx, a timed-out body taken as the request (a claim written), "
    "a normal claim refused or slow beside the crowd, or a crowd never freed.",
    (),
    charts=(
        'ax = pd.DataFrame(result.summary["probes"]).set_index("probe")["seconds"].plot.barh(\n'
        '    title="time to the answer or close, per probe (s)"\n'
        ")\n"
        'ax.axvline(request_timeout_s, color="black", linestyle="--", label="deadline")\n'
        'ax.axvline(request_timeout_s + slack_s, color="red", linestyle=":", label="bound")\n'
        "ax.legend()",
        'report.latency_ecdf(result, by="phase")',
        "report.timeline(result)",
    ),
    extra_tables=(
        'pd.DataFrame(result.summary["probes"]).set_index("probe")',
        'pd.Series(result.summary["crowd"], name="slow crowd").to_frame()',
    ),
)

SPECS["process_crash"] = Spec(
    "20_process_crash.ipynb",
    "Sixteen workers stampede a coupon of 40 and go on claiming, over HTTP, against two "
    "supervised server worker processes. The nemesis SIGKILLs one worker at a seeded "
    "time (or several, one after another) and the supervisor starts a replacement; then "
    "a graceful rolling restart (SIGTERM) goes through the workers. Claims in flight on "
    "the killed worker end unknown and the linearizability check resolves them; no "
    "half-claim (conservation); no acknowledged claim lost; PostgreSQL drops the dead "
    "worker's backends within 10 s; a replacement answers within 30 s; the rolling "
    "restart's failed requests are counted (goal: zero) and none is a 5xx.",
    "a claim row without its decrement, an acknowledged claim missing, a failure outside "
    "a kill, a backend of the dead worker left behind, a worker not restarted, or a 5xx.",
    (),
    charts=_fault_charts("kill"),
    extra_tables=(
        _BY_PHASE,
        _WINDOWS,
        'pd.DataFrame(result.summary["kills"])',
    ),
)


SPECS["locust_stampede"] = Spec(
    "23_locust_stampede.ipynb",
    "A Locust master releases 100 users, spread over 2 Locust worker processes, at one "
    "agreed instant on a coupon with stock 1, over HTTP against the lab's server: exactly "
    "one claim succeeds and the 99 others are told the coupon is out of stock; every "
    "planned op comes back once; the workers' histories, merged on the master's clock, "
    "fit one real-time order, where ops of different worker processes are widened by "
    "their clocks' measured uncertainty and one process's own ops keep their order "
    "exactly (one clock); an uncertainty past max_clock_uncertainty_ms makes that "
    "verdict unknown, never a pass.",
    "two winners, a planned op lost or doubled in the merge, a worker lost, a worker whose "
    "clock could not be measured or is past its bound, or a merged history no real-time "
    "order explains.",
    (
        'clocks = result.summary["clocks"]\n'
        'measured = [name for name, c in clocks.items() if c["offset_ms"] is not None]\n'
        "assert len(measured) == processes, "
        'f"expected the clocks of {processes} workers measured, got {measured}"',
    ),
    charts=(
        "report.outcome_chart(result)",
        'report.latency_ecdf(result, by="phase")',
        "report.latency_over_time(result)",
        _TIMELINE,
    ),
    extra_tables=(
        "pd.Series({k: result.summary[k] for k in "
        '("start_spread_ms", "process_start_spread_ms", "peak_overlap", "widening_ms")}, '
        'name="stampede")',
        'pd.DataFrame(result.summary["clocks"]).T.rename_axis("worker")',
        'pd.DataFrame(result.summary["locust_stats"]).T.rename_axis("locust request")',
    ),
    record=(
        "from experiments.locust import save_locust_reports",
        'print("saved", *save_locust_reports(result, out_dir))',
    ),
)


SPECS["isolation"] = Spec(
    "24_isolation.ipynb",
    "PostgreSQL keeps what each isolation level promises on the coupon domain (Hermitage): "
    "a campaign's one-coupon-per-user rule suffers write skew (G2-item) under the naive "
    "check-then-insert at READ COMMITTED and REPEATABLE READ, and under the advisory lock "
    "at REPEATABLE READ (its snapshot predates the lock); a statement-by-statement "
    "dashboard reads a bundle half applied (read skew, G-single) at READ COMMITTED; no "
    "anomaly under SERIALIZABLE, with the constraint, or with the one-statement read. "
    "Each finding must show in most seeds, with its witness cycle.",
    "an anomaly in a cell where the level or the implementation forbids it, an expected "
    "anomaly the checker does not catch in most seeds, a failed invariant, an answer "
    "outside the multi-row contract, or a write whose rows differ from its answer.",
    ('assert set(result.summary["anomalies"]) == set(result.summary["expected"])',),
    charts=(
        "from experiments.elle import _report as elle_report\n\n"
        "elle_report.detection_chart(result)",
        "elle_report.detection_table(result)",
        'elle_report.witness_table(result, "campaign/naive/read_committed")',
        'elle_report.witness_table(result, "dashboard/per_statement/read_committed")',
    ),
)


def _literal(value: Any) -> str:
    # Literals only in the parameters cell; tuples stay tuples (papermill injects repr).
    return repr(value)


def _code(source: str, tags: tuple[str, ...] = ()) -> Any:
    cell = nbformat.v4.new_code_cell(source)
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def build(name: str, spec: Spec) -> Any:
    scenario = SCENARIOS[name]
    md = nbformat.v4.new_markdown_cell
    knobs = "\n".join(f"{k} = {_literal(v)}" for k, v in scenario.defaults.items())
    layers = scenario.layers
    one_layer = len(layers) == 1
    # A one-layer scenario declares no layer: the suite then injects none to contradict it.
    common = ["seed", *([] if one_layer else ["layer"]), "strategy"]
    if spec.takes_database_url:
        common.append("database_url")
        db_line = "database_url = None\n"
    else:
        # Declared (every notebook offers it) but not passed: a restart must not stop
        # the suite's shared database, so this scenario always starts its own.
        db_line = "database_url = None  # not used: this scenario starts its own PostgreSQL\n"
    layer_line = f"# layer: {layers[0]} only\n" if one_layer else 'layer = "service"  # or "http"\n'
    parameters = (
        "# Common knobs; None: drawn seed, DATABASE_URL or an embedded PostgreSQL, no record.\n"
        f'seed = None\n{layer_line}strategy = "row_lock"\n{db_line}out_dir = None\n'
        "# An external server (http://host:port) to run against over HTTP; database_url then\n"
        "# names its database (None: the checks that read the tables are skipped).\n"
        "target = None\n"
        "cleanup = False  # True: delete this run's own rows afterwards\n"
        f"# {scenario.title}: the catalog's figures\n{knobs}"
    )
    # One argument a line with a trailing comma: the cell is already ruff-formatted.
    call_args = "".join(
        f"    {k}={k},\n" for k in (*common, "target", "cleanup", *scenario.defaults)
    )
    # The first cell after the parameters judges them as the CLI judges -p (type, range),
    # in the CLI's words: a value papermill injected wrong is one line, before any work.
    imports = (
        "from experiments import params, report, scenarios\n\n"
        f'params.check(\n    "{name}",\n{call_args})'
    )
    if spec.extra_tables:
        imports = "import pandas as pd\n\n" + imports
    cells = [
        md(
            f"# {scenario.title}\n\n**Hypothesis.** {spec.hypothesis}\n\n"
            f"**What would break it:** {spec.breaks}\n\n"
            "Run it as it is (an embedded PostgreSQL starts by itself), or through "
            "`coupon-chaos run` which injects the parameters below. The seed is printed: "
            "give it back to replay the same plan."
        ),
        _code(parameters, ("parameters",)),
        _code(imports),
        _code(f'result = scenarios.run(\n    "{name}",\n{call_args})'),
        md("## Summary"),
        _code("report.summary_table(result)"),
        _code("report.outcome_table(result)"),
        *(_code(t) for t in spec.extra_tables),
        md("## Charts"),
        *(_code(c) for c in spec.charts),
        md("## Verdicts\n\nEvery check, with the figures behind it."),
        _code("report.verdict_table(result)"),
        md(
            "## Expectations\n\nOne assertion per expectation; each says what was "
            "expected and what happened."
        ),
        *(_code(c) for c in _checks(name)),
        *(_code(e) for e in spec.expectations),
        _code(
            'assert result.passed, f"failed checks: {[(v.name, v.detail) for v in result.failed]}"'
        ),
        md("## Record"),
        _code(
            'if out_dir:\n    print("saved", result.save(out_dir))'
            + "".join(f"\n    {line}" for line in spec.record)
        ),
    ]
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i:02d}"  # stable ids: regenerating changes nothing, --check works
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["coupon_chaos"] = {"scenario": name, "layers": list(layers)}
    return nb


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if a notebook is stale")
    parser.add_argument("--out", type=Path, default=NOTEBOOKS)
    args = parser.parse_args(argv)
    missing = set(SPECS) - set(SCENARIOS)
    if missing:
        print(f"not in the scenario registry: {sorted(missing)}", file=sys.stderr)
        return 2
    stale = []
    args.out.mkdir(parents=True, exist_ok=True)
    from explore_notebooks import NOTEBOOKS as EXPLORE
    from explore_notebooks import build as build_explore

    built = [(spec.file, build(name, spec)) for name, spec in SPECS.items()]
    built += [(file, build_explore(*made)) for file, made in EXPLORE.items()]
    for file, notebook in built:
        path = args.out / file
        text = nbformat.writes(notebook) + "\n"
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
            print(f"wrote {path}")
    if stale:
        print(f"stale notebooks (run scripts/make_notebooks.py): {stale}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
