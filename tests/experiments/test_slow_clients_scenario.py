"""The slow_clients scenario: passes against the lab's server, and each check fails on a plant.

Every plant is a real uvicorn server on loopback over the test database, reached through
the lab's HTTP seam (``experiments.lab.http_target``), with one thing wrong in how it
holds connections: uvicorn's own protocol (the code before coupon_core.connections), a
deadline longer or shorter than the one the scenario was promised, a 408 without the
contract's body, a timed-out body taken as the request, a 500 for a cut body, a
connection bound below the crowd.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from coupon_core import connections
from coupon_core.api import create_app
from coupon_core.connections import GuardedProtocol, protocol_class
from coupon_core.server import RunningServer
from coupon_core.service import CouponService
from experiments.lab import http_target
from experiments.result import Result
from experiments.scenarios import SCENARIOS

pytestmark = pytest.mark.chaos

PROMISED_S = 1.5  # the deadline the scenario is told the server keeps (its default)
PROBE_CHECKS = ("slow_headers_timed_out", "slow_body_timed_out", "idle_closed", "cut_body_closed")


def serve_with(service: CouponService, protocol: type[asyncio.Protocol]) -> RunningServer:
    """The API on a free loopback port, through ``protocol`` (uvicorn's ``http=``)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        create_app(service),
        host="127.0.0.1",
        port=port,
        http=protocol,
        loop="uvloop",
        log_level="warning",
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive(), "the plant did not start"
        assert time.monotonic() < deadline, "the plant did not start in time"
        time.sleep(0.01)
    return RunningServer(server, thread, "127.0.0.1", port)


@pytest.fixture
def run_against(service: CouponService, db_url: str) -> Iterator[Any]:
    servers: list[RunningServer] = []

    def run(protocol: type[asyncio.Protocol], **params: Any) -> Result:
        server = serve_with(service, protocol)
        servers.append(server)
        with http_target(server.url):
            return SCENARIOS["slow_clients"].run(database_url=db_url, seed=7, **params)

    yield run
    for server in servers:
        server.stop()


def verdicts(result: Result) -> dict[str, bool | None]:
    return {v.name: v.passed for v in result.verdicts}


def failed(result: Result) -> set[str]:
    # no_leaks sees the plant's own threads (it runs on beside the lab): not the lab's.
    return {v.name for v in result.failed} - {"no_leaks"}


def test_the_lab_server_keeps_every_bound(db_url: str) -> None:
    result = SCENARIOS["slow_clients"].run(database_url=db_url, seed=3)
    assert result.passed, [(v.name, v.detail) for v in result.failed]
    assert set(verdicts(result)) == set(SCENARIOS["slow_clients"].checks())
    probes = {p["probe"]: p for p in result.summary["probes"]}
    assert probes["slow_body"]["status"] == probes["slow_headers"]["status"] == 408
    assert probes["idle"]["seconds"] >= PROMISED_S - 0.1
    assert result.summary["crowd"]["held_at_start"] == 100


def test_uvicorns_own_protocol_fails_the_deadline_checks(run_against: Any) -> None:
    # The server before coupon_core.connections: nothing bounds a slow request.
    result = run_against(HttpToolsProtocol)
    assert failed(result) == {
        "slow_headers_timed_out",
        "slow_body_timed_out",
        "idle_closed",
        "crowd_freed",
    }, [(v.name, v.detail) for v in result.failed]
    assert "the server still held it" in result.verdict("slow_body_timed_out").detail
    # It does close a body cut by a FIN, and writes nothing: those pass.
    assert result.verdict("cut_body_closed").passed
    assert result.verdict("probes_wrote_nothing").passed


def test_a_deadline_longer_than_promised_fails(run_against: Any) -> None:
    result = run_against(protocol_class(request_timeout_s=10.0))
    assert {"slow_headers_timed_out", "slow_body_timed_out", "idle_closed"} <= failed(result)
    assert "past the deadline + slack" in result.verdict("idle_closed").detail


def test_a_deadline_shorter_than_promised_fails(run_against: Any) -> None:
    result = run_against(protocol_class(request_timeout_s=0.3))
    assert {"slow_headers_timed_out", "slow_body_timed_out", "idle_closed"} <= failed(result)
    assert "before the 1.5s deadline" in result.verdict("slow_body_timed_out").detail
    assert result.verdict("cut_body_closed").passed  # closing a cut body at once is right


def test_a_408_without_the_contracts_body_fails(
    run_against: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    plain = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: text/plain\r\n"
    plain += b"content-length: 7\r\nconnection: close\r\n\r\ntimeout"
    monkeypatch.setattr(connections, "_TIMEOUT", plain)
    result = run_against(protocol_class(request_timeout_s=PROMISED_S))
    assert failed(result) == {"slow_headers_timed_out", "slow_body_timed_out"}
    assert "without the contract's error body" in result.verdict("slow_body_timed_out").detail


class TakesATimedOutBodyAsTheRequest(GuardedProtocol):
    """At the deadline, hands the app the body so far as if it were complete."""

    request_timeout_s = PROMISED_S

    def _expired(self) -> None:
        cycle = self.cycle
        if self._head_done and cycle is not None and not cycle.response_started:
            self._deadline = None
            cycle.more_body = False
            cycle.message_event.set()
            return
        super()._expired()


def test_a_timed_out_body_taken_as_the_request_fails(run_against: Any) -> None:
    result = run_against(TakesATimedOutBodyAsTheRequest)
    assert {"slow_body_timed_out", "probes_wrote_nothing", "claims_match_history"} <= failed(result)
    assert "ended 200" in result.verdict("slow_body_timed_out").detail


class AnswersACutBodyWith500(GuardedProtocol):
    """A FIN in the middle of a body is answered 500."""

    request_timeout_s = PROMISED_S

    def eof_received(self) -> None:
        body = b'{"error": "internal server error"}'
        self.transport.write(
            b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\nconnection: close\r\n\r\n%s" % (len(body), body)
        )
        self.transport.close()


def test_a_500_for_a_cut_body_fails(run_against: Any) -> None:
    result = run_against(AnswersACutBodyWith500)
    assert failed(result) == {"cut_body_closed"}
    assert "ended 500" in result.verdict("cut_body_closed").detail


def test_a_connection_bound_below_the_crowd_fails_the_normal_clients(run_against: Any) -> None:
    result = run_against(protocol_class(request_timeout_s=PROMISED_S, max_connections=20))
    assert "served_beside_crowd" in failed(result)
    assert "unavailable" in result.verdict("served_beside_crowd").detail
    assert set(PROBE_CHECKS) & failed(result) == set()


def test_bad_parameters_are_refused_before_any_work() -> None:
    from experiments.spec import SpecError

    with pytest.raises(SpecError, match="request_timeout_s"):
        SCENARIOS["slow_clients"].spec(request_timeout_s=0)
    with pytest.raises(SpecError, match="crowd"):
        SCENARIOS["slow_clients"].spec(crowd=10_000)
