"""What the lab's driver and the Locust processes tell each other: files, variables, messages.

The driver writes a spec (JSON: the plan, the server's URL, the bounds) and names it
in ``SPEC_ENV`` for the master; the master conducts the run over Locust's custom
messages and writes what came back (raw per-worker histories on each worker's own
clock, the clock round trips, who was lost) to the file named in ``OUT_ENV``. Only
the master reads or writes files: a worker on another machine needs none.

Messages (master -> worker, worker -> master):

    lab_share  m->w  the worker's plan workers and their ops, the base URL, bounds
    lab_ready  w->m  every user holds its share (or has none) and is warmed up
    lab_ping   m->w  a clock round trip; lab_pong w->m answers with the worker's clock
    lab_go     m->w  the agreed start instant, on the worker's own clock
    lab_ops    w->m  finished ops (streamed in batches: a worker that dies keeps what it sent)
    lab_done   w->m  every user of the worker has run its share

Fault injection for tests (read by a worker from its own environment, never sent):
``SKEW_ENV`` adds a constant to the worker's clock, ``STEP_ENV`` steps it at the start
instant (after the clock was measured), ``DIE_ENV`` kills the worker (SIGKILL) once it
has finished that many ops, ``SERIAL_ENV`` makes the worker run its users' ops one at a
time (a plant: a swarm that never stampedes).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "DIE_ENV",
    "OUT_ENV",
    "PING_TIMEOUT_S",
    "SERIAL_ENV",
    "SKEW_ENV",
    "SPEC_ENV",
    "STEP_ENV",
    "USER_CLASS",
    "op_from_row",
    "op_row",
]

SPEC_ENV = "COUPON_CHAOS_LOCUST_SPEC"
OUT_ENV = "COUPON_CHAOS_LOCUST_OUT"
SKEW_ENV = "COUPON_CHAOS_LOCUST_CLOCK_SKEW_MS"
STEP_ENV = "COUPON_CHAOS_LOCUST_CLOCK_STEP_MS"
DIE_ENV = "COUPON_CHAOS_LOCUST_DIE_AFTER_OPS"
SERIAL_ENV = "COUPON_CHAOS_LOCUST_SERIAL"
#: How long the master's clock ping waits for its pong: no round trip used is longer,
#: so no single estimate is less certain than half of it.
PING_TIMEOUT_S = 2.0
#: The one Locust user class of the locustfile.
USER_CLASS = "PlanUser"

#: A planned op on the wire: op_id, plan worker, kind, coupon, user, amount.
OpRow = list[Any]


def op_row(
    op_id: int, worker: int, kind: str, coupon: str, user: str | None, amount: int | None
) -> OpRow:
    return [op_id, worker, kind, coupon, user, amount]


def op_from_row(row: OpRow) -> dict[str, Any]:
    op_id, worker, kind, coupon, user, amount = row
    return {
        "op_id": int(op_id),
        "worker": int(worker),
        "kind": kind,
        "coupon": coupon,
        "user": user,
        "amount": amount,
    }
