"""The coupon domain as list-append transactions: the multi-row operations through either
layer, each recorded as a ``Txn`` the checker reads (see the package's mapping).

A door (``ServiceDoor``, ``HttpDoor``) performs an operation and never raises for its
outcome: ``ok``, ``fail`` with the refusal's kind (nothing was written), or ``info``
(unavailable, a timeout, a lost connection: it may have happened). An HTTP answer
outside the multi-row contract (docs/multirow.md: statuses, the exact error bodies, a
read's JSON shape) is recorded as a problem and its op as ``info``, never folded into
the nearest allowed outcome. ``Recorder`` numbers the transactions and keeps their
times on one monotonic clock, thread-safe.

Two encodings (``campaign_txn``, ``bundle_txn``, ``read_txn``, ``final_reads``):

- campaigns: a key per (coupon, user) (``hold_key``: ``coupon/user``), holding ``[user]`` once claimed. A campaign claim
  that succeeded read every other coupon of the campaign as not held by the user (its
  check passed) and appended to its own: two that both succeed are a G2-item cycle.
- bundles and dashboards: a key per coupon, its ``claimed_by`` in claim order (claims
  are inserted under the coupon's row lock, so id order is commit order): a bundle
  appends its user to each coupon, a dashboard read returns every list it saw.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import quote

import httpx

from coupon_core import CouponError, CouponService, Unavailable
from experiments.elle._history import Append, Outcome, Read, Txn

__all__ = [
    "Done",
    "Door",
    "HttpDoor",
    "Recorder",
    "ServiceDoor",
    "bundle_txn",
    "campaign_txn",
    "final_reads",
    "hold_key",
    "read_txn",
]

#: The error body of each refusal (the contract's messages), by HTTP status.
_REFUSALS: dict[int, dict[str, str]] = {
    400: {"coupon out of stock": "no_stock"},
    404: {"coupon not found": "not_found"},
    409: {
        "coupon already claimed by user": "already_claimed",
        "campaign already claimed by user": "campaign_claimed",
    },
}


@dataclass(frozen=True)
class Done:
    """How one operation ended: outcome, its kind, what a read saw, any contract problem."""

    outcome: Outcome
    kind: str
    #: A read's coupons: name -> claimed_by.
    value: dict[str, tuple[str, ...]] | None = None
    problem: str | None = None


class Door(Protocol):
    """The multi-row operations of one layer."""

    def create(self, name: str, amount: int, campaign: str | None = None) -> Done: ...

    def claim(self, user_id: str, coupon: str) -> Done: ...

    def claim_bundle(self, user_id: str, coupons: Sequence[str]) -> Done: ...

    def read_many(self, coupons: Sequence[str]) -> Done: ...

    def close(self) -> None: ...


@dataclass
class ServiceDoor:
    """The in-process service."""

    service: CouponService

    def _call(self, fn: Any, *args: Any) -> Done:
        try:
            fn(*args)
        except Unavailable as err:
            return Done("info", err.kind)
        except CouponError as err:
            return Done("fail", err.kind)
        except Exception as err:  # a bug: its effect is unknown, and it is a problem
            return Done("info", "error", problem=f"{type(err).__name__}: {err}")
        return Done("ok", "ok")

    def create(self, name: str, amount: int, campaign: str | None = None) -> Done:
        return self._call(self.service.create, name, amount, campaign)

    def claim(self, user_id: str, coupon: str) -> Done:
        return self._call(self.service.claim, user_id, coupon)

    def claim_bundle(self, user_id: str, coupons: Sequence[str]) -> Done:
        return self._call(self.service.claim_bundle, user_id, list(coupons))

    def read_many(self, coupons: Sequence[str]) -> Done:
        try:
            views = self.service.get_many(list(coupons))
        except Unavailable as err:
            return Done("info", err.kind)
        except CouponError as err:
            return Done("fail", err.kind)
        except Exception as err:
            return Done("info", "error", problem=f"{type(err).__name__}: {err}")
        return Done("ok", "ok", {v.name: tuple(v.claimed_by) for v in views})

    def close(self) -> None:
        return None


@dataclass
class HttpDoor:
    """The HTTP API at ``url`` (one connection pool per door: a door per worker)."""

    url: str
    timeout_s: float = 10.0
    _client: httpx.Client | None = field(default=None, init=False, repr=False)

    @property
    def client(self) -> httpx.Client:
        if self._client is None:
            self._client = httpx.Client(base_url=self.url, timeout=self.timeout_s, trust_env=False)
        return self._client

    def _send(self, method: str, path: str, **kw: Any) -> httpx.Response | Done:
        try:
            return self.client.request(method, path, **kw)
        except httpx.TimeoutException:
            return Done("info", "unknown")
        except httpx.TransportError:
            return Done("info", "unknown")

    def _judge_write(self, r: httpx.Response | Done, created: int) -> Done:
        if isinstance(r, Done):
            return r
        if r.status_code == created and not r.content:
            return Done("ok", "ok")
        if r.status_code == 503:
            return Done("info", "unavailable")
        error = _error_of(r)
        kind = _REFUSALS.get(r.status_code, {}).get(error or "")
        if kind is not None:
            return Done("fail", kind)
        if r.status_code == 409 and error == "coupon already exists":
            return Done("fail", "coupon_exists")
        return Done(
            "info",
            "contract_violation",
            problem=f"{r.request.method} {r.request.url.path}: {r.status_code} {r.text[:200]!r}",
        )

    def create(self, name: str, amount: int, campaign: str | None = None) -> Done:
        body: dict[str, Any] = {"name": name, "amount": amount}
        if campaign is not None:
            body["campaign"] = campaign
        return self._judge_write(self._send("POST", "/api/coupons", json=body), 201)

    def claim(self, user_id: str, coupon: str) -> Done:
        body = {"user_id": user_id, "coupon_name": coupon}
        return self._judge_write(self._send("POST", "/api/coupons/claim", json=body), 200)

    def claim_bundle(self, user_id: str, coupons: Sequence[str]) -> Done:
        body = {"user_id": user_id, "coupon_names": list(coupons)}
        return self._judge_write(self._send("POST", "/api/bundles/claim", json=body), 200)

    def read_many(self, coupons: Sequence[str]) -> Done:
        # Each name percent-encoded on its own (a comma inside one travels as %2C), joined
        # by raw commas: httpx's params would encode the separators too.
        names = ",".join(quote(c, safe="") for c in coupons)
        r = self._send("GET", f"/api/coupons?names={names}")
        if isinstance(r, Done):
            return r
        if r.status_code == 503:
            return Done("info", "unavailable")
        try:
            if r.status_code != 200 or "application/json" not in r.headers.get("content-type", ""):
                raise ValueError("not a 200 JSON answer")
            data = r.json()
            value = {
                str(c["name"]): tuple(str(u) for u in c["claimed_by"]) for c in data["coupons"]
            }
        except (ValueError, KeyError, TypeError):
            return Done(
                "info",
                "contract_violation",
                problem=f"GET /api/coupons: {r.status_code} {r.text[:200]!r}",
            )
        return Done("ok", "ok", value)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None


def _error_of(r: httpx.Response) -> str | None:
    if not r.headers.get("content-type", "").startswith("application/json"):
        return None
    try:
        data = json.loads(r.content)
    except ValueError:
        return None
    error = data.get("error") if isinstance(data, dict) else None
    return error if isinstance(error, str) else None


@dataclass
class Recorder:
    """The transactions of a run, numbered in invocation order, thread-safe."""

    txns: list[Txn] = field(default_factory=list)
    #: Contract problems and unexpected errors, each a line.
    problems: list[str] = field(default_factory=list)
    #: (txn id) -> what the op was and how it ended (for tables and the claims check).
    ops: dict[int, dict[str, Any]] = field(default_factory=dict)
    origin_ns: int = field(default_factory=time.monotonic_ns)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _next: int = 0

    def next_id(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def add(self, txn: Txn, op: dict[str, Any], done: Done) -> None:
        with self._lock:
            self.txns.append(txn)
            self.ops[txn.id] = {**op, "outcome": done.outcome, "kind": done.kind}
            if done.problem is not None:
                self.problems.append(done.problem)


def campaign_txn(
    tid: int,
    user: str,
    coupon: str,
    campaign_coupons: Sequence[str],
    done: Done,
    process: int,
    times: tuple[int, int],
) -> Txn:
    """A campaign claim: it read the user's hold on every other coupon of the campaign
    (what its check rests on) and appended the user to its own."""
    reads = tuple(Read(hold_key(c, user), ()) for c in campaign_coupons if c != coupon)
    return Txn(tid, (*reads, Append(hold_key(coupon, user), user)), done.outcome, process, *times)


def hold_key(coupon: str, user: str) -> str:
    """The key of one user's hold on one coupon (campaigns): ``coupon/user``."""
    return f"{coupon}/{user}"


def bundle_txn(
    tid: int, user: str, coupons: Sequence[str], done: Done, process: int, times: tuple[int, int]
) -> Txn:
    return Txn(tid, tuple(Append(c, user) for c in coupons), done.outcome, process, *times)


def read_txn(
    tid: int, coupons: Sequence[str], done: Done, process: int, times: tuple[int, int]
) -> Txn:
    """A multi-coupon read: each coupon's list as seen (None when the read did not end ok);
    a coupon the answer left out is not a read of it."""
    if done.outcome != "ok" or done.value is None:
        return Txn(tid, tuple(Read(c) for c in coupons), done.outcome, process, *times)
    ops = tuple(Read(c, done.value[c]) for c in coupons if c in done.value)
    return Txn(tid, ops, "ok", process, *times)


def final_reads(tid: int, keys: dict[Any, tuple[str, ...]], at_ns: int) -> Txn:
    """The final state read as one transaction (after every other completed)."""
    return Txn(tid, tuple(Read(k, v) for k, v in keys.items()), "ok", -1, at_ns, at_ns + 1)
