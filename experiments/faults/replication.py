"""Replication faults: kill the primary, switch over, cut or delay the replication link.

* ``ReplicationLinks``: one ``TcpProxy`` per standby between it and the primary, so
  the WAL stream can be cut (``reset``: live connections get RST, new ones refused)
  or delayed (``latency`` on the way down: the standby applies late).
* ``Failover``: the nemesis. After ``delay_s`` it optionally cuts the links, waits
  ``cut_before_s`` (the primary goes on acknowledging commits the standby never
  receives), then kills the primary (SIGKILL of the postmaster and all its
  processes, ``how="kill"``) or stops it cleanly (``how="switchover"``), waits
  ``detect_s`` (a failure detector's delay) and promotes a standby. Windows:
  ``cut`` (cut to kill) and ``down`` (kill to promoted).
* ``FailoverCommand``: the same for a cluster the lab does not run (Patroni or
  otherwise): a command of the user's, run once as the fault, bounded in time.
"""

from __future__ import annotations

import shlex
import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Literal

from coupon_core.cluster import Node, ReplicatedCluster
from experiments.faults.proxy import TcpProxy
from experiments.faults.threaded import ThreadedFault
from experiments.faults.window import Windows

__all__ = ["Failover", "FailoverCommand", "HowDown", "ReplicationLag", "ReplicationLinks"]

HowDown = Literal["kill", "switchover"]


@dataclass
class ReplicationLinks:
    """The standbys' replication connections, each through a loopback proxy of the lab."""

    cluster: ReplicatedCluster
    seed: int = 0
    proxies: dict[str, TcpProxy] = field(default_factory=dict)
    #: Empty: the nemeses that cut or delay the links record their own windows.
    windows: Windows = field(default_factory=lambda: Windows("replication_link"))

    def start(self) -> ReplicationLinks:
        primary = self.cluster.primary
        for node in self.cluster.standby_nodes():
            proxy = TcpProxy(
                self.cluster.host,
                primary.port,
                seed=self.seed,
                max_connections=8,
                latency_direction="down",
            ).start()
            self.proxies[node.name] = proxy
            self.cluster.relink(node, proxy.listen_host, proxy.port)
        self.cluster.wait_streaming()
        return self

    def stop(self) -> None:
        for proxy in self.proxies.values():
            proxy.stop()
        self.windows.close_all()

    def cut(self) -> None:
        """Cut every link: the standbys receive nothing more until ``heal()``."""
        for proxy in self.proxies.values():
            proxy.set_phase("reset")

    def lag(self, delay_s: float, jitter_s: float = 0.0) -> None:
        """Delay the WAL each standby receives by about ``delay_s`` (``jitter_s`` seeded)."""
        for proxy in self.proxies.values():
            proxy.set_phase("latency", latency_s=delay_s, jitter_s=jitter_s)

    def heal(self) -> None:
        for proxy in self.proxies.values():
            proxy.set_phase("pass")

    @property
    def threads(self) -> list[threading.Thread]:
        return [t for p in self.proxies.values() for t in p.threads]


@dataclass
class ReplicationLag:
    """The nemesis of stale reads: the standbys receive the WAL ``delay_s`` late.

    ``start()`` first waits until every standby has replayed all WAL (the schema and
    the setup coupons are there), then delays the links; ``stop()`` heals them.
    The proxy holds each batch of WAL ``delay_s``, so a standby runs about
    ``delay_s`` to twice that behind. Window ``lag``.
    """

    links: ReplicationLinks
    delay_s: float = 0.2
    windows: Windows = field(default_factory=lambda: Windows("replication_lag"))

    def start(self) -> ReplicationLag:
        self.links.cluster.wait_caught_up()
        self.links.lag(self.delay_s)
        self.windows.open("lag")
        return self

    def stop(self) -> None:
        self.links.heal()
        self.windows.close_all()


class _OneShot(ThreadedFault):
    """A fault fired once, ``delay_s`` after ``start()``, on a thread of its own.

    ``wait()`` until it is done; an error it raised is kept in ``error``; its windows
    are closed when it ends. Subclasses (dataclasses) give the fields, ``_fire`` and
    ``stop()``: a one-shot is not cut short, its ``stop()`` waits for it.
    """

    delay_s: float
    windows: Windows
    error: BaseException | None
    _thread: threading.Thread | None
    _done: threading.Event

    THREAD = "nemesis-failover"

    def wait(self, timeout: float = 120.0) -> bool:
        return self._done.wait(timeout)

    def _fire(self) -> None:
        raise NotImplementedError

    def _run(self) -> None:
        try:
            time.sleep(self.delay_s)
            self._fire()
        except BaseException as err:  # kept: a fault that failed (re-raised or reported)
            self.error = err
        finally:
            self.windows.close_all()
            self._done.set()


@dataclass
class Failover(_OneShot):
    """The nemesis: optionally cut the links, take the primary down, promote a standby."""

    cluster: ReplicatedCluster
    links: ReplicationLinks | None = None
    how: HowDown = "kill"
    delay_s: float = 0.5
    cut_before_s: float | None = None
    detect_s: float = 0.3
    windows: Windows = field(default_factory=lambda: Windows("failover"))
    #: Filled in as it happens: node names and monotonic times (ns).
    old_primary: str | None = None
    new_primary: str | None = None
    down_ns: int | None = None
    promoted_ns: int | None = None
    promote_s: float | None = None
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        if self.how not in ("kill", "switchover"):
            raise ValueError(f"how must be 'kill' or 'switchover', not {self.how!r}")
        if self.cut_before_s is not None and self.links is None:
            raise ValueError("cutting the link before the kill needs ReplicationLinks")

    def stop(self) -> None:
        """Wait for the failover to finish (it always promotes, even if the load ended)."""
        self._join(timeout=180)
        if self.error is not None:
            raise RuntimeError(f"failover failed: {self.error}") from self.error

    @property
    def old_node(self) -> Node | None:
        return None if self.old_primary is None else self.cluster.node(self.old_primary)

    def _fire(self) -> None:
        primary = self.cluster.primary
        self.old_primary = primary.name
        if self.cut_before_s is not None and self.links is not None:
            self.windows.open("cut")
            self.links.cut()
            time.sleep(self.cut_before_s)
            self.windows.close("cut")
        self.windows.open("down")
        self.down_ns = time.monotonic_ns()
        if self.how == "kill":
            self.cluster.kill(primary)
        else:
            self.cluster.stop_node(primary)
        time.sleep(self.detect_s)
        # As a failover manager would: the standby with the most WAL, so that the
        # others (with less) can follow its new timeline.
        target = self.cluster.most_advanced_standby()
        t0 = time.monotonic()
        self.cluster.promote(target)
        self.promote_s = time.monotonic() - t0
        self.new_primary = target.name
        self.promoted_ns = time.monotonic_ns()


@dataclass
class FailoverCommand(_OneShot):
    """A user's own failover (``patronictl failover --force``...), run once as the fault.

    The command runs after ``delay_s`` without a shell (split like a shell would),
    bounded by ``timeout_s``; its exit status and duration are kept, its output is
    not shown (it may hold credentials). Window ``down`` covers the command.
    """

    command: str
    delay_s: float = 0.5
    timeout_s: float = 60.0
    windows: Windows = field(default_factory=lambda: Windows("failover"))
    returncode: int | None = None
    duration_s: float | None = None
    error: BaseException | None = None
    _thread: threading.Thread | None = field(default=None, repr=False)
    _done: threading.Event = field(default_factory=threading.Event, repr=False)

    def __post_init__(self) -> None:
        if not shlex.split(self.command):
            raise ValueError("the failover command is empty")

    def stop(self) -> None:
        self._join(timeout=self.timeout_s + 30)

    def _fire(self) -> None:
        # A missing program or a timeout ends up in ``error``: a fault that failed.
        with self.windows.active("down"):
            t0 = time.monotonic()
            proc = subprocess.run(
                shlex.split(self.command),
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                stdin=subprocess.DEVNULL,
                timeout=self.timeout_s,
                check=False,
            )
            self.duration_s = time.monotonic() - t0
            self.returncode = proc.returncode
