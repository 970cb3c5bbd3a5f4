"""A wrong server: the real API, wrapped so that each variant breaks one rule of the contract.

A test double for the lab's contract judging (and for anything that speaks to an
external target). The real app answers; a thin ASGI layer rewrites the answers of
one kind, so every variant is the correct service but for one planted bug:

    claimed_message_on_409   a repeated claim says 409 "coupon already exists"
    out_of_stock_409         out of stock answers 409 instead of 400
    out_of_stock_message     out of stock answers 400 {"error": "oops"}
    body_on_claim_200        a successful claim answers 200 with a JSON body (contract: empty)
    body_on_create_201       a create answers 201 with a JSON body (contract: empty)
    missing_claimed_by       a read answers 200 without "claimed_by"
    text_plain_errors        error bodies say Content-Type text/plain
    driver_text_extra_field  a read carries an extra "error" field with driver text
    duplicate_error_key      an error body names "error" twice, driver text first
    latin1_charset           error bodies say Content-Type application/json; charset=latin-1
    utf8_bom                 error bodies open with a UTF-8 byte-order mark
    utf16_bom                error bodies are UTF-16 with its byte-order mark
    amount_out_of_range      a read says amount 2147483648
    remaining_above_amount   a read says remaining_amount one above amount
    blank_claimed_by         a read's claimed_by holds a blank entry
    repeated_claimed_by      a read's claimed_by lists each claimant twice

Import surface:

    VARIANTS                        name -> the rule it breaks
    wrong_app(app, variant)         the ASGI layer around any app (``None``: unchanged)
    serve_wrong(database_url, variant, strategy="row_lock")
                                    a context manager: real uvicorn on 127.0.0.1 in a child
                                    process of its own (own process group, own port), its
                                    base URL yielded; stopped (SIGTERM, then SIGKILL) on exit

The child gets the database URL through its environment, never its command line.
Run by hand: ``DATABASE_URL=... python -m tests.wrong_server --variant out_of_stock_409``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any

__all__ = ["VARIANTS", "WrongServerError", "serve_wrong", "wrong_app"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

VARIANTS: dict[str, str] = {
    "claimed_message_on_409": 'a repeated claim answers 409 {"error": "coupon already exists"}',
    "out_of_stock_409": "an out-of-stock claim answers 409 instead of 400",
    "out_of_stock_message": 'an out-of-stock claim answers 400 {"error": "oops"}',
    "body_on_claim_200": "a successful claim answers 200 with a JSON body, not an empty one",
    "body_on_create_201": "a create answers 201 with a JSON body, not an empty one",
    "missing_claimed_by": 'a read answers 200 without "claimed_by"',
    "text_plain_errors": "error bodies carry Content-Type text/plain",
    "driver_text_extra_field": 'a read carries an extra "error" field with driver text',
    "duplicate_error_key": 'an error body names "error" twice, driver text first',
    "latin1_charset": "error bodies say Content-Type application/json; charset=latin-1",
    "utf8_bom": "error bodies open with a UTF-8 byte-order mark",
    "utf16_bom": "error bodies are UTF-16 with its byte-order mark",
    "amount_out_of_range": "a read says amount 2147483648",
    "remaining_above_amount": "a read says remaining_amount one above amount",
    "blank_claimed_by": "a read's claimed_by holds a blank entry",
    "repeated_claimed_by": "a read's claimed_by lists each claimant twice",
}
#: The driver text the variants that leak put in a body (the issue's own inputs).
LEAK = (
    "psycopg.errors.UniqueViolation: duplicate key value violates unique constraint "
    '"claims_user_id_coupon_name_key"'
)
RELATION = 'ERROR: relation "coupons" does not exist'

ROOT = Path(__file__).resolve().parents[1]
STARTUP_TIMEOUT_S = 60.0  # imports and a pool on a loaded 2-core machine
STOP_TIMEOUT_S = 15.0


class WrongServerError(RuntimeError):
    """The wrong server did not start (or an unknown variant was asked for)."""


Rewrite = Callable[[str, str, int, str, bytes], tuple[int, str, bytes]]


def _error(body: bytes) -> str | None:
    try:
        data = json.loads(body)
    except ValueError:
        return None
    return data.get("error") if isinstance(data, dict) else None


def _wrong_error(variant: str, error: str) -> tuple[str | None, bytes] | None:
    """An error answer's (content type or None to keep it, body) as ``variant`` breaks it."""
    exact = json.dumps({"error": error}).encode()
    if variant == "duplicate_error_key":
        first, last = json.dumps(RELATION), json.dumps(error)
        return None, f'{{"error": {first}, "error": {last}}}'.encode()
    if variant == "latin1_charset":
        return "application/json; charset=latin-1", exact
    if variant == "utf8_bom":
        return None, b"\xef\xbb\xbf" + exact
    if variant == "utf16_bom":
        return None, json.dumps({"error": error}).encode("utf-16")  # BOM, then UTF-16
    return None


def _wrong_read(variant: str, data: dict[str, Any]) -> bytes | None:
    """A read's body as ``variant`` breaks it (None: not this variant's to break)."""
    if variant == "driver_text_extra_field":
        data["error"] = LEAK
    elif variant == "amount_out_of_range":
        data["amount"] = 2147483648
    elif variant == "remaining_above_amount":
        data["remaining_amount"] = data["amount"] + 1
    elif variant == "blank_claimed_by":
        data["claimed_by"] = [*data["claimed_by"], ""]
    elif variant == "repeated_claimed_by" and data["claimed_by"]:
        data["claimed_by"] = [u for u in data["claimed_by"] for _ in (0, 1)]
    else:
        return None
    return json.dumps(data).encode()


def _rewrite(variant: str) -> Rewrite:
    """(method, path, status, content type, body) -> the wrong (status, content type, body)."""
    claim = ("POST", "/api/coupons/claim")
    create = ("POST", "/api/coupons")
    as_json = "application/json"

    def rewrite(
        method: str, path: str, status: int, ctype: str, body: bytes
    ) -> tuple[int, str, bytes]:
        error = _error(body) if body else None
        if variant == "claimed_message_on_409" and (method, path) == claim and status == 409:
            return 409, as_json, b'{"error":"coupon already exists"}'
        if variant == "out_of_stock_409" and status == 400 and error == "coupon out of stock":
            return 409, ctype, body
        if variant == "out_of_stock_message" and status == 400 and error == "coupon out of stock":
            return 400, as_json, b'{"error":"oops"}'
        if variant == "body_on_claim_200" and (method, path) == claim and status == 200:
            return 200, as_json, b'{"status":"claimed"}'
        if variant == "body_on_create_201" and (method, path) == create and status == 201:
            return 201, as_json, b'{"status":"created"}'
        if variant == "missing_claimed_by" and method == "GET" and status == 200:
            data = json.loads(body)
            if isinstance(data, dict) and "claimed_by" in data:
                data.pop("claimed_by")
                return 200, as_json, json.dumps(data).encode()
        if variant == "text_plain_errors" and status >= 400 and error is not None:
            return status, "text/plain; charset=utf-8", body
        if status >= 400 and error is not None:
            wrong = _wrong_error(variant, error)
            if wrong is not None:
                return status, wrong[0] or ctype, wrong[1]
        if method == "GET" and status == 200 and path.startswith("/api/coupons/"):
            read = _wrong_read(variant, json.loads(body))
            if read is not None:
                return 200, as_json, read
        return status, ctype, body

    return rewrite


def wrong_app(app: ASGIApp, variant: str | None) -> ASGIApp:
    """``app`` with ``variant``'s rule broken (``None``: ``app`` itself, the control)."""
    if variant is None:
        return app
    if variant not in VARIANTS:
        raise WrongServerError(f"unknown variant {variant!r}; have {', '.join(VARIANTS)}")
    rewrite = _rewrite(variant)

    async def wrapped(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await app(scope, receive, send)
            return
        method, path = str(scope["method"]), str(scope["path"])
        start: Message = {}
        chunks: list[bytes] = []

        async def capture(message: Message) -> None:
            if message["type"] == "http.response.start":
                start.update(message)
                return
            if message["type"] != "http.response.body":
                await send(message)
                return
            chunks.append(bytes(message.get("body", b"")))
            if message.get("more_body", False):
                return
            headers = [(bytes(k), bytes(v)) for k, v in start.get("headers", [])]
            ctype = next((v.decode() for k, v in headers if k.lower() == b"content-type"), "")
            status, new_type, body = rewrite(
                method, path, int(start["status"]), ctype, b"".join(chunks)
            )
            kept = [
                (k, v) for k, v in headers if k.lower() not in (b"content-type", b"content-length")
            ]
            if new_type:
                kept.append((b"content-type", new_type.encode()))
            kept.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": status, "headers": kept})
            await send({"type": "http.response.body", "body": body})

        await app(scope, receive, capture)

    return wrapped


@contextlib.contextmanager
def serve_wrong(
    database_url: str, variant: str | None, *, strategy: str = "row_lock"
) -> Iterator[str]:
    """Serve the API with ``variant``'s bug on a loopback port; yields its base URL."""
    if variant is not None and variant not in VARIANTS:
        raise WrongServerError(f"unknown variant {variant!r}; have {', '.join(VARIANTS)}")
    env = {**os.environ, "DATABASE_URL": database_url, "PYTHONPATH": str(ROOT)}
    args = [sys.executable, "-m", "tests.wrong_server", "--strategy", strategy]
    if variant is not None:
        args += ["--variant", variant]
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: stopped as one
    )
    try:
        port = _read_port(proc)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop(proc)


def _read_port(proc: subprocess.Popen[bytes]) -> int:
    assert proc.stdout is not None
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or proc.poll() is not None:
            err = proc.stderr.read().decode(errors="replace")[-2000:] if proc.poll() else ""
            raise WrongServerError(f"wrong server did not start: {err or 'timed out'}")
        ready, _, _ = select.select([proc.stdout], [], [], min(left, 0.5))
        if ready:
            chunk = os.read(proc.stdout.fileno(), 64)
            if not chunk:
                continue
            line += chunk
    words = line.decode().split()
    if len(words) != 2 or words[0] != "listening":
        raise WrongServerError(f"wrong server said {line!r}")
    return int(words[1])


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(STOP_TIMEOUT_S)
    for stream in (proc.stdout, proc.stderr):
        if stream is not None:
            stream.close()


def main(argv: list[str] | None = None) -> int:
    """The child: serve until SIGTERM; print ``listening <port>`` once it accepts."""
    import uvicorn

    from coupon_core import CouponService, ServiceConfig
    from coupon_core.api import create_app
    from coupon_core.server import BACKLOG, stop_signals

    parser = argparse.ArgumentParser(description="the API with one planted contract bug")
    parser.add_argument("--variant", choices=sorted(VARIANTS), default=None)
    parser.add_argument("--strategy", default="row_lock")
    args = parser.parse_args(argv)
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("DATABASE_URL is not set", file=sys.stderr)
        return 2
    import socket

    service = CouponService.connect(
        url, ServiceConfig(strategy=args.strategy, pool_max=32, application_name="wrong-server")
    )
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        wrong_app(create_app(service), args.variant),
        backlog=BACKLOG,
        access_log=False,
        log_level="warning",
        lifespan="auto",  # the app may or may not speak ASGI lifespan
        timeout_keep_alive=30,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    with stop_signals() as stop:
        thread.start()
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while not server.started and thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        if not server.started:
            print("server did not start", file=sys.stderr)
            return 1
        print(f"listening {port}", flush=True)
        while not stop.wait(0.5) and thread.is_alive():
            pass
        server.should_exit = True
        thread.join(10)
    service.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
