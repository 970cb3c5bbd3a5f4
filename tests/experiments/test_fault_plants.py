"""Each fault scenario's checks fail on a planted service bug or a fault that did not happen.

One test per case of issue 26: the plant is monkeypatched into the real lab (a real
database, the real service, the real fault), the scenario runs through the pipeline, and
the check that holds the promise must fail. Each docstring says what the old code did
with the same plant (the checks of ``cbbd49f``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from coupon_core import CouponService, ServiceConfig
from coupon_core.breaker import CircuitBreaker
from coupon_core.errors import Unavailable
from experiments.faults import processes
from experiments.faults.backends import BackendKiller
from experiments.faults.processes import WorkerKiller
from experiments.faults.proxy import TcpProxy
from experiments.faults.schedule import ProxySchedule
from experiments.result import Result
from experiments.scenarios import SCENARIOS, network_faults

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


def _run(name: str, db_url: str, **params: Any) -> Result:
    return SCENARIOS[name].run(seed=1, layer="service", database_url=db_url, **params)


def _failed(result: Result) -> list[str]:
    return sorted(v.name for v in result.failed)


@pytest.fixture
def refuse_claims_after(monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """A service that refuses every claim (``Unavailable``) once the event is set; its
    health check and its reads go on answering."""
    broken = threading.Event()
    claim = CouponService.claim

    def refusing(self: CouponService, user_id: str, coupon_name: str) -> None:
        if broken.is_set():
            raise Unavailable()
        claim(self, user_id, coupon_name)

    monkeypatch.setattr(CouponService, "claim", refusing)
    return broken


def _after(monkeypatch: pytest.MonkeyPatch, cls: type, method: str, event: threading.Event) -> None:
    """Set ``event`` once ``cls.method`` returns (the fault's own loop has ended)."""
    inner = getattr(cls, method)

    def wrapped(self: object) -> None:
        try:
            inner(self)
        finally:
            event.set()

    monkeypatch.setattr(cls, method, wrapped)


# -- 1. recovery means claims served again, not a health check -------------------------


def test_connection_drop_fails_a_service_that_never_serves_claims_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch, refuse_claims_after: threading.Event
) -> None:
    """Old code: ``recovered`` (health, SELECT 1) passed and nothing asked a claim to
    succeed after the last kill: the run passed."""
    _after(monkeypatch, BackendKiller, "_rounds", refuse_claims_after)
    result = _run("connection_drop", db_url)
    assert result.verdict("recovered").passed is True  # what the old code judged
    assert result.verdict("service_recovered_in_bound").passed is False
    assert result.status == "FAIL"


def test_network_faults_fails_a_service_that_never_serves_claims_again(
    db_url: str, monkeypatch: pytest.MonkeyPatch, refuse_claims_after: threading.Event
) -> None:
    """Old code: after-phase all unavailable claims and ok gets passed (health only)."""
    _after(monkeypatch, ProxySchedule, "_run", refuse_claims_after)
    result = _run("network_faults", db_url)
    assert result.verdict("recovered").passed is True
    assert result.verdict("service_recovered_in_bound").passed is False
    assert result.status == "FAIL"


# -- 2. every named phase is judged ----------------------------------------------------


def test_network_faults_fails_when_the_stall_and_the_throttle_did_nothing(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old code: only latency and reset were judged: with a proxy whose stall forwards
    and whose throttle does not slow, the run passed."""
    monkeypatch.setattr(TcpProxy, "_stalled", lambda self: False)
    monkeypatch.setattr(TcpProxy, "_send", lambda self, dst, data: dst.sendall(data))
    result = _run("network_faults", db_url)
    assert result.verdict("latency_applied").passed is True
    assert result.verdict("reset_cut_connections").passed is True
    assert result.verdict("stall_held").passed is False
    assert result.verdict("throttle_applied").passed is False
    assert result.status == "FAIL"


def test_network_faults_fails_when_the_schedule_is_cut_short(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old code: a timetable that stopped after its latency phase was never compared
    with the plan (reset_cut_connections read the proxy's counters over the whole run)."""
    steps_run = ProxySchedule._run

    def short(self: ProxySchedule) -> None:
        self.steps = self.steps[:2]
        steps_run(self)

    monkeypatch.setattr(ProxySchedule, "_run", short)
    result = _run("network_faults", db_url)
    assert result.verdict("schedule_ran").passed is False
    assert result.status == "FAIL"


def test_network_faults_fails_when_its_baseline_never_came(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old code: ``begun_on_time`` was recorded and no verdict read it: a timetable that
    gave up waiting for its baseline and started anyway ran every phase, and the run
    passed (the only failed check here is the one that now reads it)."""
    monkeypatch.setattr(network_faults, "_ok_load_ops", lambda history: 0)
    monkeypatch.setattr(network_faults, "BASELINE_WITHIN_S", 0.5)
    result = _run("network_faults", db_url)
    assert _failed(result) == ["schedule_ran"]
    ran = result.verdict("schedule_ran")
    assert "baseline never came" in ran.detail
    assert ran.figures["begun_on_time"] is False
    # Every phase ran in order: what the old schedule_ran compared, and passed.
    assert [ph for ph, _ in ran.figures["windows"]] == [ph for ph, _ in ran.figures["planned"]]
    assert result.status == "FAIL"


# -- 9. every fault's count compared with the plan -------------------------------------


def test_connection_drop_fails_when_fewer_rounds_ran_than_planned(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Old code: ``backends_killed`` asked for one backend killed at all: 24 backends in
    3 rounds passed with kills=4 (the fault phase ended before the fourth round)."""
    rounds = BackendKiller._rounds

    def fewer(self: BackendKiller) -> None:
        self.max_kills -= 1
        rounds(self)

    monkeypatch.setattr(BackendKiller, "_rounds", fewer)
    result = _run("connection_drop", db_url)
    v = result.verdict("backends_killed")
    assert v.passed is False, v.detail
    assert v.figures["rounds"] == 3
    assert v.figures["planned"] == 4


# -- 3. the service's statement timeout, not a session of the lab's -------------------


def test_query_timeout_fails_a_service_without_its_statement_timeout(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service that sets lock_timeout where it should set statement_timeout: claims
    behind the lock still time out, a slow query never does. Old code: ``pg_sleep`` ran
    on a session of the lab's own with its own statement_timeout, and passed."""

    def lock_timeout_only(self: ServiceConfig) -> str:
        ms = self.statement_timeout_ms or self.lock_timeout_ms
        return f"-c lock_timeout={ms}" if ms else ""

    monkeypatch.setattr(ServiceConfig, "conninfo_options", lock_timeout_only)
    result = _run("query_timeout", db_url)
    assert result.verdict("timeouts_observed").passed is True
    v = result.verdict("slow_query_cancelled")
    assert v.passed is False, v.detail
    assert v.figures["error"] is None
    assert result.status == "FAIL"


# -- 4. the outage bound is the design's promise ---------------------------------------


def test_database_restart_fails_an_open_breaker_that_answers_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An open circuit breaker that refuses after 1.5 s. Old code: the bound was half
    the pool timeout (2.5 s at op_timeout_s 5), and the 1 s goal only printed MISSED."""
    allow = CircuitBreaker.allow

    def late(self: CircuitBreaker) -> bool:
        ok = allow(self)
        if not ok:
            time.sleep(1.5)
        return ok

    monkeypatch.setattr(CircuitBreaker, "allow", late)
    result = SCENARIOS["database_restart"].run(seed=1, layer="service")
    v = result.verdict("outage_answers_fast")
    assert v.passed is False, v.detail
    assert v.figures["p99_ms"] > 1000
    assert v.figures["bound_s"] == 1.0
    assert result.status == "FAIL"


# -- 5. process_crash watches something and cuts something ----------------------------


def test_process_crash_fails_when_it_watches_no_backend(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Workers whose backends go by another name: the killer counts none before the kill
    and 'none left' at once after it. Old code: dead_backends_gone passed, watching 0."""
    monkeypatch.setattr(processes, "_backend_count", lambda conn, name: 0)
    result = SCENARIOS["process_crash"].run(seed=1, database_url=db_url, rolling=False)
    v = result.verdict("dead_backends_gone")
    assert v.passed is False, v.detail
    assert v.figures["backends_before"] == [0]
    assert result.status == "FAIL"


def test_process_crash_whose_kill_cuts_nothing_is_no_experiment(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The kill at once, before the load began (not waiting for a request in flight):
    every attempt cut no claim, so the pipeline drew it again and the run is
    no_experiment. Old code: unknown_per_kill [0] passed (seed 1 killed at 0.34 s, the
    first claim went out at 0.87 s)."""
    monkeypatch.setattr(processes, "_busy_count", lambda conn, name: 1)
    monkeypatch.setattr(WorkerKiller, "first_s", 0.0)
    monkeypatch.setattr(WorkerKiller, "jitter_s", 0.0)
    result = SCENARIOS["process_crash"].run(
        seed=1, database_url=db_url, rolling=False, run_timeout_s=60
    )
    assert result.status == "no_experiment", [(v.name, v.detail) for v in result.failed]
    assert result.verdict("kills_cut_claims").figures["cut_per_kill"] == [0]
    assert len(result.attempts) > 1
    assert all(a.status == "no_experiment" for a in result.attempts)


# -- 6. leaks looked for on the database, under the service's name --------------------


@pytest.fixture
def leaking_service(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[psycopg.Connection[Any]]]:
    """A service that opens five connections of its own (under its application_name)
    and never closes them; the test closes them afterwards."""
    leaked: list[psycopg.Connection[Any]] = []
    connect = CouponService.connect.__func__  # type: ignore[attr-defined]

    def leaking(cls: type[CouponService], url: str, config: Any = None, **kw: Any) -> CouponService:
        svc = connect(cls, url, config, **kw)
        name = svc.config.application_name
        leaked.extend(
            psycopg.connect(url, autocommit=True, application_name=name) for _ in range(5)
        )
        return svc

    monkeypatch.setattr(CouponService, "connect", classmethod(leaking))
    try:
        yield leaked
    finally:
        for conn in leaked:
            conn.close()


@pytest.mark.parametrize("name", ["input_boundary", "partial_failure"])
def test_a_service_leaking_five_connections_fails_no_leaks(
    name: str, db_url: str, leaking_service: list[psycopg.Connection[Any]]
) -> None:
    """Old code (before the one pipeline, 5e1106b^): input_boundary called
    ``check_leaks(baseline, pool_stats=...)``, without the database or the service's
    application_name, and passed (partial_failure failed, as it should). The pipeline now
    gives every run's leak check both; this holds it there."""
    params = {"generated_cases": 20} if name == "input_boundary" else {}
    result = _run(name, db_url, **params)
    assert len(leaking_service) >= 5
    v = result.verdict("no_leaks")
    assert v.passed is False, v.detail
    assert v.figures["backends_left"] >= 5
    assert result.status == "FAIL"


# -- 7. a stampede that is one, in the database ---------------------------------------


def test_negative_stock_under_a_global_lock_is_no_stampede(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The known-racy mutant:lost_update with every claim behind one lock in the
    service: the history still shows 40 claims in flight at once (they wait on the
    lock), the database never more than one. Old code: 5 ok, 35 no_stock, and the run
    passed; now every attempt is no_experiment, never green."""
    claim = CouponService.claim
    one_at_a_time = threading.Lock()

    def serial(self: CouponService, user_id: str, coupon_name: str) -> None:
        with one_at_a_time:
            claim(self, user_id, coupon_name)

    monkeypatch.setattr(CouponService, "claim", serial)
    result = _run("negative_stock", db_url, strategy="mutant:lost_update")
    assert result.status == "no_experiment", [(v.name, v.detail) for v in result.failed]
    v = result.verdict("stampede_contended")
    assert v.passed is False, v.detail
    assert v.figures["peak_busy"] <= 1
    assert result.verdict("claim_counts").passed is True  # what the old code saw


def test_a_result_refuses_two_verdicts_of_one_name() -> None:
    """Old code: negative_stock returned two verdicts named claim_counts and
    ``Result.verdict`` found the first only. The one place every result is made refuses
    it (the pipeline, ``skipped`` and a loaded result alike)."""
    from experiments.history import History
    from experiments.result import Verdict

    with pytest.raises(ValueError, match=r"more than once in one result: \['claim_counts'\]"):
        Result(
            scenario="x",
            seed=1,
            layer="service",
            strategy="row_lock",
            params={},
            history=History(),
            verdicts=[Verdict("claim_counts", True, "a"), Verdict("claim_counts", True, "b")],
        )


# -- 8. a fault check is skipped only where its fault cannot happen --------------------


def test_partial_failure_fails_when_row_lock_claims_never_reach_the_point(
    db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A service whose row_lock claims call no fault hook (the hook dropped on the way
    to the strategy): no claim is failed after its insert. Old code: ``fault_injected``
    was skipped whenever the hook was never reached, and the run passed; the skip is
    now by declaration (``faults.partial.AFTER_INSERT``: atomic only), so it fails."""
    from coupon_core import strategies

    take = strategies._check_and_take

    def no_hook(cur: Any, remaining: Any, user_id: str, coupon_name: str, fault: Any) -> None:
        take(cur, remaining, user_id, coupon_name, None)

    monkeypatch.setattr(strategies, "_check_and_take", no_hook)
    result = _run("partial_failure", db_url, strategy="row_lock")
    v = result.verdict("fault_injected")
    assert v.skipped is False, v.detail
    assert v.passed is False, v.detail
    assert result.summary["hook_reached"] == 0
    assert result.status == "FAIL"
