"""An Elle-style isolation checker: cycles in the dependency graph of list-append txns.

The question: could the committed transactions of a history have run one at a time
(serializable), and, with real-time edges, in an order that respects real time
(strict serializable)? As in Jepsen's Elle (Kingsbury and Alvaro, "Elle: Inferring
Isolation Anomalies from Experimental Observations", VLDB 2020; jepsen-io/elle
``list_append.clj``, ``txn.clj``, ``graph.clj``): every key holds a list, every write
appends a unique value, every read returns the whole list, so each read reveals a
prefix of that key's version order. From the longest read of each key the checker
infers the version order (every other read must be its prefix, else
``incompatible-order``), then the edges between transactions: ww (consecutive
versions), wr (a read ending on a version), rw (a read ending on a version, and the
writer of the next one), plus optionally process and real-time order. Tarjan's
algorithm (iterative) finds the strongly connected components; in each, a
breadth-first search names the shortest cycle found of each class: G0 (ww only), G1c
(ww and wr), G-single (exactly one rw), G2-item (two or more rw), suffixed
``-realtime`` / ``-process`` when the cycle needs an order edge. Reads alone show
G1a (a read of a failed txn's append), G1b (a read ending on an intermediate
append), and ``internal``, ``duplicate-elements``, ``duplicate-appends``,
``garbage-read``. The whole check is about linear in the history: no search over
orders.

``check_history`` returns the lab's ``Verdict``: passed False with a witness per
anomaly (``figures["witnesses"]``: the cycle's txns, its edges and why each exists),
True when the model forbids none of what was found, None (unknown) past the time
bound or when the checker fails: never a pass.

How a scenario feeds it (the coupon domain; the ``isolation`` scenario does, through
``_domain``, whose campaign encoding keys each (coupon, user) hold instead): the key is a coupon name, the list its
``claimed_by`` (claims in id order, which is the order they were inserted: ``claims.id``
is a sequence taken at insert time, so a claim appends its user at the end):

- claim(user, coupon) acknowledged ok  -> ``Txn(ops=(Append(coupon, user),), "ok")``;
  refused (not found, already claimed, campaign, no stock) -> ``"fail"`` (nothing was
  written); unknown (timeout, lost connection, 503 after sending) -> ``"info"``.
- bundle claim(user, [a, b]) -> one txn ``(Append(a, user), Append(b, user))``.
- get(coupon) ok -> ``Txn(ops=(Read(coupon, tuple(view.claimed_by)),))``.
- multi-read ``GET /api/coupons?names=a,b`` -> one txn with a ``Read`` per coupon
  asked; a missing coupon reads as ``()`` only if it is known to exist yet (else
  leave it out). ``snapshot`` reads are one txn; ``per_statement`` reads are one
  txn too: that is the point, the checker then shows their read skew (G-single).
- the process is the lab's worker id; invoke/complete the history's monotonic ns.
- values must be unique per key: a user claims a coupon at most once by contract;
  a duplicate user in one list is itself flagged (``duplicate-elements``).

Judge with ``model="serializable"`` for the ``constraint`` and SERIALIZABLE
strategies and the snapshot read; a naive READ COMMITTED variant is expected to
show G-single / G2-item: a finding, asserted as such.

    _history    Txn, Append, Read: the history model
    _graph      typed edges, Tarjan's SCC (iterative), shortest cycle through an edge
    _infer      list-append inference: version orders, G1a/G1b/internal, the edges
    _cycles     cycle classification per SCC, witnesses with their reasons
    _check      check_history: the verdict
    _oracle     serial_order: the brute-force oracle for small histories
    _simulate   random_history, serial_history, stale_read: seeded histories
    _domain     the coupon domain as txns: the doors (service, HTTP), the recorder,
                the encodings of campaign claims, bundles and reads
"""

from __future__ import annotations

from experiments.elle._check import (
    CHECK_NAME,
    ELLE_TIME_LIMIT_S,
    FORBIDDEN,
    Model,
    check_history,
)
from experiments.elle._cycles import CYCLE_CLASSES, Witness
from experiments.elle._domain import (
    Done,
    Door,
    HttpDoor,
    Recorder,
    ServiceDoor,
    bundle_txn,
    campaign_txn,
    final_reads,
    hold_key,
    read_txn,
)
from experiments.elle._history import Append, MicroOp, Outcome, Read, Txn
from experiments.elle._oracle import serial_order
from experiments.elle._simulate import random_history, serial_history, stale_read

__all__ = [
    "CHECK_NAME",
    "CYCLE_CLASSES",
    "ELLE_TIME_LIMIT_S",
    "FORBIDDEN",
    "Append",
    "Done",
    "Door",
    "HttpDoor",
    "MicroOp",
    "Model",
    "Outcome",
    "Read",
    "Recorder",
    "ServiceDoor",
    "Txn",
    "Witness",
    "bundle_txn",
    "campaign_txn",
    "check_history",
    "final_reads",
    "hold_key",
    "random_history",
    "read_txn",
    "serial_history",
    "serial_order",
    "stale_read",
]
