"""The lab's nemesis: faults a scenario injects into the service, its database and the network.

Each fault is a start/stop object (and a context manager), bounded in time, undone
when it stops, seeded where it draws at random, and records the windows when it
was active (``experiments.faults.window``) so ops can be labelled with a phase.

    backends   terminate the service's backends, once, repeatedly, or mid-claim
    restart    stop and start the database during a load
    locks      hold a coupon's row lock from another session; slow queries
    pool       hold the service's pool connections
    proxy      a loopback TCP proxy: latency, throttling, resets, stalls
    cancel     cancel statements in flight (server side, or psycopg's cancel)
    partial    fail a claim between its insert and its decrement
    threaded   start, stop and ``with`` for a fault working on a thread of its own
    replication  a replicated cluster: kill the primary, switch over, cut or delay
               the replication link, or run a user's own failover command
"""

from __future__ import annotations

from experiments.faults.backends import BackendKiller, ClaimPause, backend_pids, terminate_backends
from experiments.faults.cancel import CancelAfter, cancel_backends
from experiments.faults.locks import RowLockHolder, SlowQuery
from experiments.faults.partial import FailAfterInsert, InjectedFault, chain_hooks
from experiments.faults.pool import PoolHog
from experiments.faults.proxy import PHASES, PhaseName, TcpProxy
from experiments.faults.replication import (
    Failover,
    FailoverCommand,
    ReplicationLag,
    ReplicationLinks,
)
from experiments.faults.restart import DatabaseRestart, restart_skip_reason, time_to_recover
from experiments.faults.window import Window, Windows, label_ops

__all__ = [
    "PHASES",
    "BackendKiller",
    "CancelAfter",
    "ClaimPause",
    "DatabaseRestart",
    "FailAfterInsert",
    "Failover",
    "FailoverCommand",
    "InjectedFault",
    "PhaseName",
    "PoolHog",
    "ReplicationLag",
    "ReplicationLinks",
    "RowLockHolder",
    "SlowQuery",
    "TcpProxy",
    "Window",
    "Windows",
    "backend_pids",
    "cancel_backends",
    "chain_hooks",
    "label_ops",
    "restart_skip_reason",
    "terminate_backends",
    "time_to_recover",
]
