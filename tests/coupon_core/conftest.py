"""The API tests' fixtures: one service per module, its app in-process and over uvicorn.

``client`` calls the app in-process (``in_process``, tests/fix_asgi.py: no socket),
for the HTTP contract (status, body, headers) without a server's cost or timing.
``wire`` is a client of the same service served by uvicorn on loopback, for what only
a server shows (a raw socket, a body cut off mid-upload, HEAD, many connections).
A module picks its service's strategy by overriding ``api_strategy``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

from coupon_core import CouponService
from coupon_core.api import CouponApp, create_app
from coupon_core.server import RunningServer, serve_in_thread
from tests.fix_asgi import ASGIApp


@pytest.fixture(scope="module")
def api_strategy() -> str:
    """The claim strategy of the module's service (a module overrides it)."""
    return "row_lock"


@pytest.fixture(scope="module")
def api_service(db_url: str, api_strategy: str) -> Iterator[CouponService]:
    svc = CouponService.connect(db_url, strategy=api_strategy, pool_max=20)
    try:
        yield svc
    finally:
        svc.close()


@pytest.fixture(scope="module")
def api_app(api_service: CouponService) -> Iterator[CouponApp]:
    """The module service's app, built by ``create_app`` as uvicorn's is."""
    app = create_app(api_service)
    try:
        yield app
    finally:
        app.close()


@pytest.fixture
def client(api_app: CouponApp, in_process: Callable[[ASGIApp], httpx.Client]) -> httpx.Client:
    """The module's app, called in-process."""
    return in_process(api_app)


@pytest.fixture(scope="module")
def server(api_service: CouponService) -> Iterator[RunningServer]:
    """The module's service served by uvicorn on loopback (started on first use)."""
    with serve_in_thread(api_service) as running:
        yield running


@pytest.fixture
def wire(server: RunningServer) -> Iterator[httpx.Client]:
    """A client of ``server``, over real HTTP."""
    with httpx.Client(base_url=server.url, timeout=30) as c:
        yield c
